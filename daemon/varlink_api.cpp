// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/varlink_api.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/journal.hpp"
#include "daemon/wire.hpp"
#include "version.hpp"

namespace nsidd::daemon {

extern const char kServiceDescription[]; // org.varlink.service.varlink, embedded at build time

namespace {

using varlink::Json;
constexpr std::string_view kService = "org.varlink.service";

} // namespace

struct VarlinkApi::Method {
    std::string_view name;
    void (VarlinkApi::*handler)(Server::Client&, const varlink::Call&);
    std::string_view parameter; ///< the one parameter it takes, or "" for none
    bool privileged = false;    ///< uid 0 only
    bool streaming = false;     ///< requires `more`
};

std::span<const VarlinkApi::Method> VarlinkApi::methods() {
    static const std::array<Method, 11> table{{
        {"org.varlink.service.GetInfo", &VarlinkApi::get_info, "", false, false},
        {"org.varlink.service.GetInterfaceDescription", &VarlinkApi::get_interface_description,
         "interface", false, false},
        {"io.nsidd.Registry.GetStatus", &VarlinkApi::get_status, "", false, false},
        {"io.nsidd.Registry.List", &VarlinkApi::list, "observer", false, false},
        {"io.nsidd.Registry.Graph", &VarlinkApi::graph, "", false, false},
        {"io.nsidd.Registry.History", &VarlinkApi::history, "limit", false, false},
        {"io.nsidd.Registry.ListWithoutNsid", &VarlinkApi::list_without_nsid, "", false, false},
        {"io.nsidd.Registry.Watch", &VarlinkApi::watch, "since", false, true},
        {"io.nsidd.Registry.Resync", &VarlinkApi::resync, "", true, false},
        {"io.nsidd.Registry.Reload", &VarlinkApi::reload, "", true, false},
        {"io.nsidd.Registry.GetMetrics", &VarlinkApi::get_metrics, "", false, false},
    }};
    return table;
}

std::vector<std::string_view> VarlinkApi::method_names() {
    std::vector<std::string_view> out;
    for (const auto& m : methods())
        out.push_back(m.name);
    return out;
}

VarlinkApi::VarlinkApi(const mirror::Engine& engine, Hooks hooks)
    : engine_(engine), hooks_(std::move(hooks)) {}

void VarlinkApi::call(Server::Client& client, const varlink::Call& call) {
    const auto& name = call.method;
    const Method* found = nullptr;
    for (const auto& m : methods())
        if (m.name == name)
            found = &m;
    if (found == nullptr) {
        const auto interface = name.substr(0, name.rfind('.'));
        if (interface == kInterface || interface == kService)
            client.error(varlink::kMethodNotFound, {{"method", name}});
        else
            client.error(varlink::kInterfaceNotFound, {{"interface", interface}});
    } else if (allowed(client, *found, call)) {
        (this->*found->handler)(client, call);
    }
    if (hooks_.counted)
        hooks_.counted(name, !client.failed());
}

// What every method shares: no parameter it does not take, uid 0 where privileged, `more`
// where it streams.
bool VarlinkApi::allowed(Server::Client& client, const Method& m, const varlink::Call& call) {
    for (const auto& [key, value] : call.parameters.items())
        if (key != m.parameter) {
            client.error(varlink::kInvalidParameter, {{"parameter", key}});
            return false;
        }
    if (m.privileged && client.uid() != 0) {
        client.error(kPermissionDenied);
        // Rate-limited (powers of two): a client looping on denials cannot flood the log.
        ++denials_;
        if ((denials_ & (denials_ - 1)) == 0)
            log_notable(Notable::PermissionDenied, spdlog::level::warn,
                        fmt::format("Denied {} to uid {} ({} denials so far)", m.name, client.uid(),
                                    denials_));
        return false;
    }
    if (m.streaming && !call.more) {
        client.error(varlink::kExpectedMore);
        return false;
    }
    if (call.more && call.oneway) {
        // Replies wanted and not wanted: nothing is done (and, oneway, nothing is sent).
        client.error(varlink::kInvalidParameter, {{"parameter", "oneway"}});
        return false;
    }
    return true;
}

void VarlinkApi::get_info(Server::Client& client, const varlink::Call&) {
    client.reply({{"vendor", "nsidd"},
                  {"product", "nsidd"},
                  {"version", kVersion},
                  {"url", "https://github.com/nsidd/nsidd"},
                  {"interfaces", Json::array({std::string(kService), std::string(kInterface)})}});
}

void VarlinkApi::get_interface_description(Server::Client& client, const varlink::Call& call) {
    const auto it = call.parameters.find("interface");
    if (it == call.parameters.end() || !it->is_string())
        client.error(varlink::kInvalidParameter, {{"parameter", "interface"}});
    else if (*it == kInterface)
        client.reply({{"description", std::string(kInterfaceDescription)}});
    else if (*it == kService)
        client.reply({{"description", std::string(kServiceDescription)}});
    else
        client.error(varlink::kInterfaceNotFound, {{"interface", *it}});
}

void VarlinkApi::get_status(Server::Client& client, const varlink::Call&) {
    client.reply(hooks_.status());
}

Json VarlinkApi::entries(registry::Observer observer, const registry::Registry::Table& t) const {
    Json out = Json::array();
    for (const auto& [nsid, row] : t.rows)
        out.push_back(
            to_json(engine_.view(observer, row.entry), engine_.state(observer, row.entry)));
    return out;
}

void VarlinkApi::list(Server::Client& client, const varlink::Call& call) {
    const auto it = call.parameters.find("observer");
    if (it != call.parameters.end() && !it->is_string() && !it->is_null()) {
        client.error(varlink::kInvalidParameter, {{"parameter", "observer"}}); // ?string
        return;
    }
    const std::string name =
        it == call.parameters.end() || it->is_null() ? "self" : it->get<std::string>();
    std::optional<registry::Observer> observer = registry::kSelf;
    if (name != "self") {
        char* end = nullptr;
        const long v = std::strtol(name.c_str(), &end, 10);
        if (!name.empty() && *end == '\0' && v >= 0 && v <= INT32_MAX)
            observer = static_cast<registry::Observer>(v);
        else
            observer = hooks_.nsid_of_name(name);
    }
    if (hooks_.settle)
        hooks_.settle();
    const auto* table = observer ? engine_.registry().table(*observer) : nullptr;
    if (table == nullptr) {
        client.error(kNoSuchObserver, {{"observer", name}});
        return;
    }
    client.reply({{"entries", entries(*observer, *table)}, {"seq", engine_.feed().seq()}});
}

void VarlinkApi::graph(Server::Client& client, const varlink::Call&) {
    if (hooks_.settle)
        hooks_.settle();
    Json tables = Json::array();
    for (const auto& [observer, table] : engine_.registry().tables())
        tables.push_back(
            {{"observer", observer_name(observer)}, {"entries", entries(observer, table)}});
    client.reply({{"tables", std::move(tables)}, {"seq", engine_.feed().seq()}});
}

namespace {

// The optional non-negative integer parameter `name`: false (and an error sent) when it is
// anything else.
bool count_parameter(Server::Client& client, const varlink::Call& call, const char* name,
                     std::optional<std::uint64_t>& out) {
    const auto it = call.parameters.find(name);
    if (it == call.parameters.end() || it->is_null())
        return true;
    if (!(it->is_number_integer() && it->get<std::int64_t>() >= 0)) {
        client.error(varlink::kInvalidParameter, {{"parameter", name}});
        return false;
    }
    out = it->get<std::uint64_t>();
    return true;
}

} // namespace

void VarlinkApi::history(Server::Client& client, const varlink::Call& call) {
    std::optional<std::uint64_t> given;
    if (!count_parameter(client, call, "limit", given))
        return;
    const std::size_t limit = given.value_or(SIZE_MAX);
    const auto& deaths = engine_.registry().history();
    Json out = Json::array();
    const std::size_t skip = deaths.size() > limit ? deaths.size() - limit : 0;
    for (std::size_t i = skip; i < deaths.size(); ++i)
        out.push_back(to_json(deaths[i]));
    client.reply({{"deaths", std::move(out)}});
}

void VarlinkApi::list_without_nsid(Server::Client& client, const varlink::Call&) {
    Json out = Json::array();
    for (const auto& ns : engine_.unlisted())
        out.push_back(to_json(ns));
    client.reply({{"namespaces", std::move(out)}});
}

void VarlinkApi::watch(Server::Client& client, const varlink::Call& call) {
    std::optional<std::uint64_t> since;
    if (!count_parameter(client, call, "since", since))
        return;
    if (hooks_.settle)
        hooks_.settle();
    // Resumable when every change after `since` is still kept (or there is none yet). What
    // the feed holds undrained is sent to every watcher, this one included, when drained.
    const auto& feed = engine_.feed();
    const bool resumed = since && feed.resumable(*since);
    client.reply({{"seq", resumed ? *since : feed.drained_seq()},
                  {"kind", "resync"},
                  {"observer", "self"},
                  {"entry", nullptr},
                  {"removed", false},
                  {"resumed", resumed}},
                 true);
    if (resumed)
        feed.for_each_after(*since, [&](const auto& item) { client.reply(to_json(item), true); });
    client.subscribe();
}

void VarlinkApi::resync(Server::Client& client, const varlink::Call&) {
    hooks_.resync();
    client.reply(Json::object());
}

void VarlinkApi::reload(Server::Client& client, const varlink::Call&) {
    if (auto err = hooks_.reload())
        client.error(kInvalidConfiguration, {{"message", *err}});
    else
        client.reply({{"restart_needed", hooks_.restart_needed()}});
}

void VarlinkApi::get_metrics(Server::Client& client, const varlink::Call&) {
    client.reply({{"text", hooks_.metrics_text()}});
}

void send_changes(mirror::Feed& feed, Server* server,
                  const std::function<void(const mirror::Feed::Item&)>& seen) {
    feed.drain([&](const mirror::Feed::Item& item) {
        if (server != nullptr)
            server->publish([&] { return varlink::encode_reply(to_json(item), true); },
                            kWatcherTooSlow);
        if (seen)
            seen(item);
    });
}

} // namespace nsidd::daemon
