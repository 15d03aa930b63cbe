// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/options.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <map>
#include <optional>
#include <set>
#include <sstream>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "util/unique_fd.hpp"
#include "version.hpp"

namespace nsidd::daemon {
namespace {

const std::map<std::string, Scope> kScopes{{"self", Scope::Self}, {"host", Scope::Host}};

void describe_limits(CLI::App& app, Options& o);

// Builds the parser over `o`. Every option is also a config-file key of the same name.
void describe(CLI::App& app, Options& o) {
    app.set_config("--config", o.config, "Configuration file (TOML)", false);
    app.allow_config_extras(CLI::config_extras_mode::error);
    app.add_option("--socket", o.socket, "Varlink socket path")
        ->check(CLI::Validator(
            [](const std::string& v) {
                return !v.empty() && v.front() == '/' ? std::string()
                                                      : std::string("must be an absolute path");
            },
            "PATH"))
        ->capture_default_str();
    app.add_option_function<std::string>(
           "--scope", [&o](const std::string& v) { o.scope = kScopes.at(v); },
           "Tables to mirror: self or host")
        ->check(CLI::IsMember({"self", "host"}))
        ->default_str(o.scope == Scope::Host ? "host" : "self");
    app.add_option("--rcvbuf", o.rcvbuf, "Event socket receive buffer, bytes")
        ->check(CLI::Range(4096, 1 << 30))
        ->capture_default_str();
    app.add_option("--resync-interval", o.resync_interval,
                   "Seconds between periodic resyncs (0: never)")
        ->check(CLI::Range(0u, 86400u * 7))
        ->capture_default_str();
    app.add_option("--metrics-listen", o.metrics_listen,
                   "Prometheus listener ADDR:PORT, [IPv6]:PORT or none")
        ->check(CLI::Validator(
            [](const std::string& v) {
                return v == "none" || parse_listen_address(v)
                           ? std::string()
                           : std::string("not ADDR:PORT, [ADDR]:PORT (port 1-65535) or none");
            },
            "ADDR:PORT"))
        ->capture_default_str();
    app.add_option("--log-level", o.log_level, "trace, debug, info, warning, error, critical")
        ->check(CLI::IsMember({"trace", "debug", "info", "warning", "error", "critical"}))
        ->capture_default_str();
    app.add_option("--history", o.history, "Deaths kept in the history ring")
        ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 20))
        ->capture_default_str();
    describe_limits(app, o);
}

// The Varlink server's limits and the discovery settings.
void describe_limits(CLI::App& app, Options& o) {
    app.add_option("--max-connections", o.max_connections, "Varlink connections in all")
        ->check(CLI::Range(std::size_t{1}, std::size_t{65536}))
        ->capture_default_str();
    app.add_option("--max-connections-per-uid", o.max_connections_per_uid,
                   "Varlink connections per client uid")
        ->check(CLI::Range(std::size_t{1}, std::size_t{65536}))
        ->capture_default_str();
    app.add_option("--max-request", o.max_request, "Largest Varlink request, bytes")
        ->check(CLI::Range(std::size_t{1024}, std::size_t{64} << 20))
        ->capture_default_str();
    app.add_option("--max-output", o.max_output,
                   "Unsent reply bytes per client before it is dropped (slow watchers)")
        ->check(CLI::Range(std::size_t{4096}, std::size_t{1} << 30))
        ->capture_default_str();
    app.add_option("--max-total-output", o.max_total_output,
                   "Unsent reply bytes of all clients together; past it the largest are dropped")
        ->check(CLI::Range(std::size_t{1} << 20, std::size_t{1} << 34))
        ->capture_default_str();
    app.add_option("--idle-timeout", o.idle_timeout,
                   "Seconds a connection may stay idle or a request half-sent")
        ->check(CLI::Range(1u, 3600u))
        ->capture_default_str();
    app.add_option("--discovery-interval", o.discovery_interval,
                   "Seconds between discovery passes over /proc")
        ->check(CLI::Range(0.05, 3600.0))
        ->capture_default_str();
    app.add_option("--orphan-grace", o.orphan_grace,
                   "Seconds a peer may have no process and no bind mount before it is pinned, "
                   "or only a stale-mount path before it is stale")
        ->check(CLI::Range(0.0, 86400.0 * 7))
        ->capture_default_str();
    app.add_option("--stale-mount-paths", o.stale_mount_paths,
                   "Globs of bind mounts that outlive their owner, added to the runtimes' own "
                   "(CNI/CRI, Docker, Podman); comma-separated")
        ->delimiter(',')
        ->check(CLI::Validator(
            [](std::string& glob) {
                return !glob.empty() && glob.front() == '/' && glob.size() <= 4096
                           ? std::string()
                           : std::string("not an absolute path glob");
            },
            "GLOB"))
        ->capture_default_str();
    app.add_option("--id-cache", o.id_cache,
                   "File that keeps namespace ids across restarts (this boot only), or none")
        ->capture_default_str();
    app.add_flag("--assign-ids", o.assign_ids,
                 "Give every namespace found an id in this namespace's table (changes kernel "
                 "state)")
        ->default_str(o.assign_ids ? "true" : "false");
}

std::optional<unsigned> parse_port(const std::string& s) {
    if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos)
        return std::nullopt;
    const unsigned long v = std::strtoul(s.c_str(), nullptr, 10);
    if (v == 0 || v > 65535)
        return std::nullopt;
    return static_cast<unsigned>(v);
}

// An error message quotes what it could not parse: at most this much of it.
constexpr std::size_t kMaxQuoted = 200;
constexpr off_t kMaxConfigBytes = 1 << 20;

std::string shorten(std::string what) {
    if (what.size() > kMaxQuoted)
        what = what.substr(0, kMaxQuoted) + "... (" + std::to_string(what.size()) + " bytes)";
    return what;
}

// The config file must be a regular file of at most 1 MiB (/dev/null: no settings); a missing
// one means defaults. Returns why it cannot be read.
std::optional<std::string> check_config_file(const std::string& file) {
    struct stat st {};
    if (file == "/dev/null" || ::stat(file.c_str(), &st) < 0)
        return std::nullopt;
    if (!S_ISREG(st.st_mode))
        return file + ": not a regular file";
    if (st.st_size > kMaxConfigBytes)
        return file + ": larger than 1 MiB";
    return std::nullopt;
}

// A copy of `file` without its leading UTF-8 byte order mark, when it has one (else no fd).
UniqueFd without_bom(const std::string& file) {
    UniqueFd in(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    char head[3] = {};
    if (!in || ::read(in.get(), head, 3) != 3 || std::memcmp(head, "\xEF\xBB\xBF", 3) != 0)
        return UniqueFd();
    UniqueFd out(::memfd_create("nsidd.conf", MFD_CLOEXEC));
    if (!out)
        return UniqueFd();
    char buf[65536];
    for (ssize_t n; (n = ::read(in.get(), buf, sizeof buf)) > 0;)
        if (::write(out.get(), buf, static_cast<std::size_t>(n)) != n)
            return UniqueFd();
    return out;
}

// argv, with the config file replaced by `copy` when there is one.
std::vector<std::string> with_config(int argc, char** argv, const UniqueFd& copy) {
    std::vector<std::string> args(argv, argv + argc);
    if (!copy)
        return args;
    const std::string path = "/proc/self/fd/" + std::to_string(copy.get());
    bool replaced = false;
    for (std::size_t i = 1; i < args.size(); ++i) {
        if (args[i] == "--config" && i + 1 < args.size())
            args[i + 1] = path, replaced = true;
        else if (args[i].rfind("--config=", 0) == 0)
            args[i] = "--config=" + path, replaced = true;
    }
    if (!replaced)
        args.insert(args.end(), {"--config", path});
    return args;
}

// Parses argv and the config file; on failure returns the message, naming the option or key
// and, for an error in the file, the file.
std::variant<Options, std::string> parse(int argc, char** argv, bool with_version, int& exit_code) {
    Options o;
    CLI::App app{"nsidd: a live mirror of the kernel's network-namespace id tables", "nsidd"};
    describe(app, o);
    if (with_version)
        app.set_version_flag("--version", std::string(kVersion));
    exit_code = -1;
    // Which options the command line gave, and which file: for naming the source of an error.
    auto given = [argc, argv](const std::string& key) {
        for (int i = 1; i < argc; ++i)
            if (argv[i] == key || std::string(argv[i]).rfind(key + "=", 0) == 0)
                return true;
        return false;
    };
    std::string file = o.config;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--config" && i + 1 < argc)
            file = argv[i + 1];
        else if (a.rfind("--config=", 0) == 0)
            file = a.substr(9);
    }
    if (auto bad = check_config_file(file))
        return *bad;
    // A UTF-8 byte order mark (some editors write one) would read as part of the first key:
    // CLI11 then reads a copy without it.
    const UniqueFd copy = without_bom(file);
    const auto args = with_config(argc, argv, copy);
    std::vector<const char*> ptrs;
    for (const auto& a : args)
        ptrs.push_back(a.c_str());
    try {
        app.parse(static_cast<int>(ptrs.size()), ptrs.data());
    } catch (const CLI::Success& e) {
        exit_code = app.exit(e);
        return std::string();
    } catch (const CLI::ConfigError& e) {
        // CLI11 says "INI was not able to parse KEY" for unknown keys and broken lines.
        std::string what = e.what();
        const std::string prefix = "INI was not able to parse ";
        if (what.rfind(prefix, 0) == 0)
            what = "unknown key or bad line: " + what.substr(prefix.size());
        return file + ": " + shorten(what);
    } catch (const CLI::ParseError& e) {
        std::string what = shorten(e.what());
        // A value error for an option not on the command line came from the file.
        for (const auto* opt : app.get_options()) {
            const std::string key = "--" + opt->get_single_name();
            if (what.rfind(key + ":", 0) == 0 && !given(key))
                return file + ": key '" + opt->get_single_name() + "'" + what.substr(key.size());
        }
        return what;
    }
    return o;
}

// Each setting's value as the parser shows it (its default string, taken from `o`).
std::map<std::string, std::string> values(const Options& o) {
    Options copy = o;
    CLI::App app;
    describe(app, copy);
    std::map<std::string, std::string> out;
    for (const auto* opt : app.get_options())
        if (opt->get_single_name() != "config" && opt->get_single_name() != "help")
            out[opt->get_single_name()] = opt->get_default_str();
    return out;
}

} // namespace

std::vector<std::string> restart_only_changes(const Options& running, const Options& fresh) {
    // Applied at a reload (Daemon::reload); every other setting needs a restart.
    static const std::set<std::string> kLive{"log-level", "resync-interval"};
    const auto before = values(running), after = values(fresh);
    std::vector<std::string> out;
    for (const auto& [key, value] : after)
        if (!kLive.count(key) && before.at(key) != value)
            out.push_back(key);
    return out;
}

std::optional<ListenAddress> parse_listen_address(const std::string& text) {
    ListenAddress out;
    const auto colon = text.rfind(':');
    if (colon == std::string::npos)
        return std::nullopt;
    const auto port = parse_port(text.substr(colon + 1));
    if (!port)
        return std::nullopt;
    std::string host = text.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        auto* a = reinterpret_cast<sockaddr_in6*>(&out.addr);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(static_cast<std::uint16_t>(*port));
        if (::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a->sin6_addr) != 1)
            return std::nullopt;
        out.len = sizeof *a;
        return out;
    }
    auto* a = reinterpret_cast<sockaddr_in*>(&out.addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<std::uint16_t>(*port));
    if (::inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1)
        return std::nullopt;
    out.len = sizeof *a;
    return out;
}

ParseResult parse_options(int argc, char** argv) {
    int exit_code = -1;
    auto r = parse(argc, argv, true, exit_code);
    if (exit_code >= 0)
        return exit_code;
    if (auto* err = std::get_if<std::string>(&r)) {
        std::fprintf(stderr, "nsidd: %s\n", err->c_str());
        return 2;
    }
    return std::get<Options>(r);
}

std::variant<Options, std::string> reload_options(int argc, char** argv) {
    int exit_code = -1;
    return parse(argc, argv, false, exit_code);
}

} // namespace nsidd::daemon
