// SPDX-License-Identifier: LGPL-2.1-or-later
// nsidctl: queries nsidd over its Varlink socket.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include <CLI/CLI.hpp>

#include "cli/args.hpp"
#include "cli/format.hpp"
#include "util/time.hpp"
#include "varlink/client.hpp"
#include "version.hpp"

namespace {

using namespace nsidctl;

// The states --state takes, as people spell them.
std::vector<std::string> state_names() {
    std::vector<std::string> out;
    for (const auto& n : nsidd::kPeerStateNames)
        out.emplace_back(n.name);
    return out;
}

enum Exit { Ok = 0, DaemonError = 1, Usage = 2, Unreachable = 3 };

struct Settings {
    std::string socket{nsidd::kDefaultSocket};
    std::string json; // "", "short" or "pretty"
    bool no_legend = false;
};

void print_json(const Settings& s, const Json& j) {
    std::cout << j.dump(s.json == "pretty" ? 2 : -1, ' ', false, Json::error_handler_t::replace)
              << '\n';
}

// The array under `key`; a reply without one is malformed (Json::exception, caught in run()).
const Json& array_at(const Json& j, const char* key) {
    const Json& v = j.at(key);
    if (!v.is_array())
        throw Json::type_error::create(302, std::string(key) + " is not an array", &v);
    return v;
}

void print_entries(const Settings& s, const Json& entries) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& e : entries) {
        const Json peer = e.value("peer", Json::object());
        rows.push_back({std::to_string(e.at("nsid").get<std::int64_t>()),
                        cell(e.value("current_nsid", Json(nullptr))), fit(peer_label(peer), 16),
                        cell(state_name(e.value("state", Json(nullptr)))), fit(held_by(peer), 20),
                        fit(owned_by(peer), 18), age(e.value("since", Json()))});
    }
    // Cookie, inode, former names, every holder and the whole owner: in -j.
    print_table(!s.no_legend, {"NSID", "CURRENT", "PEER", "STATE", "HELD BY", "OWNER", "SINCE"},
                rows);
    if (!s.no_legend)
        std::cout << '\n' << plural(entries.size(), "entry", "entries") << " listed.\n";
}

// The exit code for an error of Session::call(): the daemon refused (1), or is out of reach (3).
int exit_code(const std::error_code& ec) {
    return ec == nsidd::Errc::Rejected ? DaemonError : Unreachable;
}

class Session {
public:
    explicit Session(Settings s) : s_(std::move(s)) {}

    // Connects; on failure prints one line naming the socket.
    nsidd::Result<void> connect() {
        auto c = nsidd::varlink::Client::connect(s_.socket);
        if (!c) {
            const bool denied = c.error() == std::errc::permission_denied;
            std::fprintf(stderr, "nsidctl: cannot reach nsidd at %s: %s%s\n", s_.socket.c_str(),
                         c.error().message().c_str(),
                         denied ? " (members of group nsidd may connect)" : "");
            return nsidd::fail(c.error());
        }
        client_.emplace(std::move(*c));
        return {};
    }

    // One call: the reply's parameters, Errc::Rejected for an error reply (printed), or the
    // reason nsidd could not be reached (printed).
    nsidd::Result<Json> call(const std::string& method, const Json& params = Json::object()) {
        if (!client_)
            if (auto c = connect(); !c)
                return nsidd::fail(c.error());
        auto reply = client_->call(method, params);
        return check(reply);
    }

    nsidd::Result<Json> check(const nsidd::Result<nsidd::varlink::Reply>& reply) {
        if (!reply) {
            std::fprintf(stderr, "nsidctl: lost connection to nsidd at %s: %s\n", s_.socket.c_str(),
                         reply.error().message().c_str());
            return nsidd::fail(nsidd::Errc::Closed);
        }
        if (!reply->error.empty()) {
            std::fprintf(stderr, "nsidctl: %s\n", describe_error(*reply).c_str());
            return nsidd::fail(nsidd::Errc::Rejected);
        }
        return reply->parameters;
    }

    int status() {
        auto r = call("io.nsidd.Registry.GetStatus");
        if (!r)
            return exit_code(r.error());
        const Json& j = (*r);
        if (!s_.json.empty()) {
            print_json(s_, j);
            return Ok;
        }
        const Json k = j.value("kernel", Json::object());
        auto yes = [](const Json& v) {
            return v.is_boolean() && v.get<bool>() ? "yes" : "no";
        };
        const auto uptime = j.value("uptime_usec", std::uint64_t{0});
        const auto last = j.value("last_resync_usec", std::uint64_t{0});
        std::printf("       Version: %s\n", cell(j["version"]).c_str());
        std::printf("        Uptime: %s\n", nsidd::format_duration(uptime).c_str());
        std::printf("         Scope: %s\n", cell(j["scope"]).c_str());
        std::printf("        Tables: %s\n", cell(j["tables"]).c_str());
        std::printf("       Entries: %s\n", cell(j["entries"]).c_str());
        std::printf("        Events: %s in %s batches\n", cell(j["events"]).c_str(),
                    cell(j["batches"]).c_str());
        std::printf("      Overruns: %s\n", cell(j["overruns"]).c_str());
        std::printf("       Resyncs: %s (last %s)\n", cell(j["resyncs"]).c_str(),
                    last ? nsidd::format_age(last, nsidd::realtime_usec()).c_str() : "never");
        const Json peers = j.value("peers", Json::object());
        std::string by_state;
        for (const auto& st : nsidd::kPeerStateNames)
            by_state += (by_state.empty() ? "" : ", ") + std::string(st.name) + " " +
                        cell(peers.value(st.wire, Json(0)));
        std::printf("         Peers: %s\n", by_state.c_str());
        std::printf("        Kernel: dump truncation %s, listen-all-nsid %s, NS_GET_ID %s, "
                    "listmount %s\n",
                    yes(k.value("dump_truncation", Json())),
                    yes(k.value("listen_all_nsid", Json())), yes(k.value("ns_get_id", Json())),
                    yes(k.value("listmount", Json())));
        return Ok;
    }

    int list(const std::string& observer, const Filter& filter) {
        Json params = Json::object();
        if (!observer.empty())
            params["observer"] = observer;
        auto r = call("io.nsidd.Registry.List", params);
        if (!r)
            return exit_code(r.error());
        Json entries = Json::array();
        for (const auto& e : array_at(*r, "entries"))
            if (filter.matches(e))
                entries.push_back(e);
        if (!s_.json.empty()) {
            Json out = Json::array();
            for (const auto& e : entries)
                out.push_back(cli_entry(e));
            print_json(s_, out);
            return Ok;
        }
        print_entries(s_, entries);
        return Ok;
    }

    // Namespaces that leak (stale-mount, fd-held, pinned; with an id in self's table or not)
    // and dangling names, with what holds them and what to do.
    int leaks() {
        auto r = call("io.nsidd.Registry.List");
        if (!r)
            return exit_code(r.error());
        auto unlisted = call("io.nsidd.Registry.ListWithoutNsid");
        if (!unlisted)
            return exit_code(unlisted.error());
        auto st = call("io.nsidd.Registry.GetStatus");
        if (!st)
            return exit_code(st.error());
        Leaks leaks;
        for (const auto& e : array_at(*r, "entries"))
            leaks.add(e);
        for (const auto& n : array_at(*unlisted, "namespaces"))
            leaks.add(n); // without an id: named by cookie
        for (const auto& name : st->value("dangling_names", Json::array()))
            leaks.add_dangling(name);
        if (!s_.json.empty()) {
            print_json(s_, leaks.found);
            return Ok;
        }
        print_table(!s_.no_legend, {"NSID", "STATE", "HELD BY", "OWNER", "SINCE"}, leaks.rows);
        if (!s_.no_legend) {
            std::cout << '\n'
                      << plural(leaks.rows.size(), "leaking peer", "leaking peers") << ".\n";
            for (const auto& f : leaks.found)
                std::cout << leaks.label(f) << ": " << f["action"].get<std::string>() << '\n';
        }
        return Ok;
    }

    int graph() {
        auto r = call("io.nsidd.Registry.Graph");
        if (!r)
            return exit_code(r.error());
        const Json& tables = array_at(*r, "tables");
        // Each observer is named as self's table names it: its /run/netns names, else a pid.
        std::map<std::string, std::string> labels;
        for (const auto& t : tables)
            if (t.value("observer", Json()) == "self")
                for (const auto& e : array_at(t, "entries"))
                    labels[cell(e.value("nsid", Json(nullptr)))] =
                        peer_label(e.value("peer", Json::object()));
        const auto label = [&labels](const std::string& observer) -> Json {
            const auto it = labels.find(observer);
            return it == labels.end() || it->second == "-" ? Json(nullptr) : Json(it->second);
        };
        if (!s_.json.empty()) {
            Json out = Json::array();
            for (const auto& t : tables) {
                Json entries = Json::array();
                for (const auto& e : array_at(t, "entries"))
                    entries.push_back(cli_entry(e));
                // The observer as nsidd names it: "self", or self's id as a number.
                const std::string name = cell(t["observer"]);
                Json observer = name == "self" ? Json("self") : Json(std::stoll(name));
                out.push_back({{"observer", observer},
                               {"observer-label", name == "self" ? Json(nullptr) : label(name)},
                               {"entries", std::move(entries)}});
            }
            print_json(s_, out);
            return Ok;
        }
        bool first = true;
        for (const auto& t : tables) {
            if (!first)
                std::cout << '\n';
            first = false;
            const std::string name = cell(t["observer"]);
            const Json named = name == "self" ? Json(nullptr) : label(name);
            std::cout << "Observer " << name
                      << (named.is_string() ? " (" + named.get<std::string>() + ")" : "") << ":\n";
            print_entries(s_, array_at(t, "entries"));
        }
        return Ok;
    }

    int history(long limit) {
        Json params = Json::object();
        if (limit >= 0)
            params["limit"] = limit;
        auto r = call("io.nsidd.Registry.History", params);
        if (!r)
            return exit_code(r.error());
        const Json& deaths = array_at(*r, "deaths");
        if (!s_.json.empty()) {
            Json out = deaths;
            for (auto& d : out) // the state as list and leaks spell it
                if (d.is_object() && d.contains("state"))
                    d["state"] = state_name(d["state"]);
            print_json(s_, out);
            return Ok;
        }
        std::vector<std::vector<std::string>> rows;
        for (const auto& d : deaths) {
            const auto life = d.value("lifetime_usec", std::uint64_t{0});
            const std::string lifetime = nsidd::format_duration(life);
            const Json peer = d.value("peer", Json::object());
            const bool down = d.value("died_while_down", false);
            rows.push_back({cell(d["nsid"]), peer_label(peer, true),
                            cell(peer.value("cookie", Json(nullptr))),
                            down ? "while down" : age(d.value("died", Json())),
                            d.value("since", Json()).is_null() ? "-" : lifetime,
                            cell(state_name(d.value("state", Json(nullptr))))});
        }
        print_table(!s_.no_legend, {"NSID", "PEER", "COOKIE", "DIED", "LIFETIME", "LAST STATE"},
                    rows);
        return Ok;
    }

    // Streams changes; when nsidd goes away (a restart), reconnects and resumes after the last
    // seq printed. A gap it cannot bridge (another run of nsidd: seqs of different runs never
    // overlap) is said on stderr and, in JSON, as the new start marker.
    int watch(std::optional<std::int64_t> since) {
        for (bool first = true;; first = false) {
            if (!first && !reconnect(since))
                return Unreachable;
            if (first) {
                if (auto c = connect(); !c)
                    return exit_code(c.error());
            }
            const int rc = stream(since, !first);
            if (rc != Unreachable)
                return rc; // an error reply (WatcherTooSlow, ...): no point in retrying
        }
    }

    // One Watch call: prints its changes until the connection ends (Unreachable) or nsidd
    // answers with an error; `since` follows the last seq printed.
    int stream(std::optional<std::int64_t>& since, bool again) {
        const Json parameters = since ? Json{{"since", *since}} : Json::object();
        if (auto sent = client_->send("io.nsidd.Registry.Watch", parameters, true); !sent)
            return Unreachable;
        for (bool first = true;; first = false) {
            auto r = client_->receive();
            if (!r)
                return Unreachable;
            if (!r->error.empty()) {
                std::fprintf(stderr, "nsidctl: %s\n", describe_error(*r).c_str());
                return DaemonError;
            }
            const Json& j = r->parameters;
            const auto seq = j.value("seq", Json(nullptr));
            if (first && j.value("entry", Json()).is_null()) { // the start marker
                if (since && !j.value("resumed", false))
                    gap(j, *since, again);
                if (seq.is_number_integer())
                    since = seq.get<std::int64_t>();
                continue;
            }
            if (!s_.json.empty()) {
                Json out = j;
                if (j.contains("entry") && j["entry"].is_object())
                    out["entry"] = cli_entry(j["entry"]);
                print_json(s_, out);
            } else {
                std::printf("%s\n", watch_line(j).c_str());
            }
            std::fflush(stdout);
            if (seq.is_number_integer())
                since = seq.get<std::int64_t>();
        }
    }

    // The changes after `after` cannot be replayed: said on stderr, and for JSON readers the
    // start marker itself (kind resync, resumed false): read the tables again.
    void gap(const Json& marker, std::int64_t after, bool again) {
        std::fprintf(stderr,
                     again ? "nsidctl: nsidd restarted: the changes after seq %lld cannot be "
                             "replayed; the stream goes on from its new start (read the tables "
                             "again: nsidctl list)\n"
                           : "nsidctl: too old to resume after seq %lld: read again (nsidctl "
                             "list)\n",
                     static_cast<long long>(after));
        if (!s_.json.empty()) {
            print_json(s_, marker);
            std::fflush(stdout);
        }
    }

    // nsidd went away: connects again, every 200 ms for up to a minute (a restart).
    bool reconnect(const std::optional<std::int64_t>& since) {
        std::fprintf(stderr, "nsidctl: lost nsidd at %s; reconnecting (to resume after seq %s)\n",
                     s_.socket.c_str(), since ? std::to_string(*since).c_str() : "-");
        client_.reset();
        for (int tries = 0; tries < 300; ++tries) {
            if (auto c = nsidd::varlink::Client::connect(s_.socket)) {
                client_.emplace(std::move(*c));
                return true;
            }
            ::usleep(200'000);
        }
        std::fprintf(stderr, "nsidctl: nsidd at %s did not come back within a minute\n",
                     s_.socket.c_str());
        return false;
    }

    int simple(const std::string& method) {
        auto r = call(method);
        return r ? Ok : exit_code(r.error());
    }

    int metrics() {
        auto r = call("io.nsidd.Registry.GetMetrics");
        if (!r)
            return exit_code(r.error());
        if (!s_.json.empty())
            print_json(s_, *r);
        else
            std::cout << r->at("text").get<std::string>();
        return Ok;
    }

private:
    Settings s_;
    std::optional<nsidd::varlink::Client> client_;
};

} // namespace

// Runs the parsed command. A reply that does not have the shape the interface promises is
// nsidd's error (exit 1), never a crash.
int run(Session& session, const CLI::App& app, const std::string& observer, const Filter& filter,
        long limit, std::optional<std::int64_t> since) {
    try {
        const auto given = [&app](const char* name) {
            return app.got_subcommand(name);
        };
        if (given("status"))
            return session.status();
        if (given("list"))
            return session.list(observer, filter);
        if (given("leaks"))
            return session.leaks();
        if (given("graph"))
            return session.graph();
        if (given("history"))
            return session.history(limit);
        if (given("watch"))
            return session.watch(since);
        if (given("resync"))
            return session.simple("io.nsidd.Registry.Resync");
        if (given("reload"))
            return session.simple("io.nsidd.Registry.Reload");
        if (given("metrics"))
            return session.metrics();
    } catch (const Json::exception& e) {
        std::fprintf(stderr, "nsidctl: malformed reply from nsidd (%s)\n", e.what());
        return DaemonError;
    }
    return Usage;
}

int main(int argc, char** argv_in) {
    nsidctl::Args args(argc, argv_in);
    char** argv = args.argv();
    Settings settings;
    CLI::App app{"nsidctl: query nsidd, the nsid table mirror", "nsidctl"};
    app.set_version_flag("--version", std::string(nsidd::kVersion));
    app.require_subcommand(1);
    app.fallthrough(); // the options may also follow the command: nsidctl status -j
    app.add_option("--socket", settings.socket, "nsidd's Varlink socket")->capture_default_str();
    app.add_option("-j,--json", settings.json, "JSON output: short (default) or pretty")
        ->expected(0, 1)
        ->default_str("short")
        ->check(CLI::IsMember({"short", "pretty"}));
    app.add_flag("--no-legend", settings.no_legend, "Omit headers and footers");

    std::string observer;
    Filter filter;
    long limit = -1;
    std::optional<std::int64_t> since;
    app.add_subcommand("status", "Show the daemon's state");
    auto* list = app.add_subcommand("list", "List one table (self, an nsid or a netns name)");
    list->add_option("OBSERVER", observer, "Whose table");
    list->add_option("--state", filter.state, "Only peers in this state")
        ->check(CLI::IsMember(state_names()));
    list->add_option("--name", filter.name, "Only peers with a name matching this glob");
    list->add_option("--owner", filter.owner,
                     "Only peers whose owner (unit, runtime, container, pod) contains this");
    app.add_subcommand("leaks", "List peers that leak (stale-mount, fd-held, pinned)");
    app.add_subcommand("graph", "List every mirrored table");
    app.add_subcommand("history", "List dead peers")
        ->add_option("-n", limit, "At most N, the most recent")
        ->check(CLI::Range(0L, 1L << 20));
    app.add_subcommand("watch", "Print changes as they happen")
        ->add_option("--since", since,
                     "Resume after this seq (the last one an earlier watch printed)")
        ->check(CLI::NonNegativeNumber);
    app.add_subcommand("resync", "Re-read the tables from the kernel (root)");
    app.add_subcommand("reload", "Re-read the configuration (root)");
    app.add_subcommand("metrics", "Print Prometheus metrics");
    const std::string word = nsidctl::command_word(argc, argv);
    const auto commands = app.get_subcommands([](const CLI::App*) { return true; });
    if (!word.empty() && std::none_of(commands.begin(), commands.end(),
                                      [&word](const auto* c) { return c->get_name() == word; })) {
        std::fprintf(stderr, "nsidctl: unknown command '%s' (nsidctl --help lists them)\n",
                     word.c_str());
        return Usage;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return Usage;
    }
    if (app.count("--json") && settings.json.empty())
        settings.json = "short";
    Session session(settings);
    return run(session, app, observer, filter, limit, since);
}
