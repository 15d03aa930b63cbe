// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/options.hpp"

#include <cstdio>
#include <map>
#include <sstream>

#include <CLI/CLI.hpp>

#include "version.hpp"

namespace nsidd::daemon {
namespace {

const std::map<std::string, Scope> kScopes{{"self", Scope::Self}, {"host", Scope::Host}};

// Builds the parser over `o`. Every option is also a config-file key of the same name.
void describe(CLI::App& app, Options& o) {
    app.set_config("--config", o.config, "Configuration file (TOML)", false);
    app.allow_config_extras(CLI::config_extras_mode::error);
    app.add_option("--socket", o.socket, "Varlink socket path")->capture_default_str();
    app.add_option("--scope", o.scope, "Tables to mirror: self or host")
        ->transform(CLI::CheckedTransformer(kScopes, CLI::ignore_case))
        ->capture_default_str();
    app.add_option("--rcvbuf", o.rcvbuf, "Event socket receive buffer, bytes")
        ->check(CLI::Range(4096, 1 << 30))
        ->capture_default_str();
    app.add_option("--resync-interval", o.resync_interval,
                   "Seconds between periodic resyncs (0: never)")
        ->check(CLI::Range(0u, 86400u * 7))
        ->capture_default_str();
    app.add_option("--metrics-listen", o.metrics_listen, "Prometheus listener ADDR:PORT or none")
        ->capture_default_str();
    app.add_option("--log-level", o.log_level, "trace, debug, info, warning, error")
        ->check(CLI::IsMember({"trace", "debug", "info", "warning", "error", "critical"}))
        ->capture_default_str();
    app.add_option("--history", o.history, "Deaths kept in the history ring")
        ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 20))
        ->capture_default_str();
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
    app.add_option("--idle-timeout", o.idle_timeout,
                   "Seconds a half-sent request may wait before the client is dropped")
        ->check(CLI::Range(1u, 3600u))
        ->capture_default_str();
}

} // namespace

ParseResult parse_options(int argc, char** argv) {
    Options o;
    CLI::App app{"nsidd: a live mirror of the kernel's network-namespace id tables", "nsidd"};
    describe(app, o);
    app.set_version_flag("--version", std::string(kVersion));
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return 2;
    }
    return o;
}

std::variant<Options, std::string> reload_options(int argc, char** argv) {
    Options o;
    CLI::App app{"nsidd", "nsidd"};
    describe(app, o);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return std::string(e.what());
    }
    return o;
}

} // namespace nsidd::daemon
