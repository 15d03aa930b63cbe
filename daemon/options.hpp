// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstdint>
#include <string>
#include <vector>
#include <optional>
#include <variant>

#include <sys/socket.h>

#include "version.hpp"

namespace nsidd::daemon {

enum class Scope : std::uint8_t { Self, Host };

/// nsidd's settings, from defaults, then the config file, then the command line.
struct Options {
    std::string config{kDefaultConfig};
    std::string socket{kDefaultSocket};
    Scope scope = Scope::Self;
    int rcvbuf = 8 << 20;
    unsigned resync_interval = 300; ///< seconds; 0 disables the periodic resync
    std::string metrics_listen = "127.0.0.1:9477";
    std::string log_level = "info";
    std::size_t history = 1024;
    std::size_t max_connections = 4096;
    std::size_t max_connections_per_uid = 1024;
    std::size_t max_request = 1 << 20;
    std::size_t max_output = 16 << 20;       ///< unsent bytes per client before it is dropped
    std::size_t max_total_output = 64 << 20; ///< unsent bytes of all clients together
    unsigned idle_timeout = 45;              ///< seconds a half-sent request may wait
    double discovery_interval = 10;          ///< seconds between discovery passes over /proc
    double orphan_grace = 60; ///< seconds a peer may go unheld before it is pinned (or stale)
    /// Globs of bind mounts that outlive their owner, beyond the runtimes' own
    /// (util/runtimes.hpp): a peer held only by one is stale-mount.
    std::vector<std::string> stale_mount_paths;
    bool assign_ids = false;                 ///< give every namespace found an id in self's table
    std::string id_cache = "/run/nsidd/ids"; ///< ids kept across restarts; "none": not kept
};

/// Where to serve: an IPv4 or IPv6 address and a port.
struct ListenAddress {
    sockaddr_storage addr{};
    socklen_t len = 0;
};

/// Parses "ADDR:PORT" (IPv4) or "[ADDR]:PORT" (IPv6), port 1..65535; nullopt when it is neither.
std::optional<ListenAddress> parse_listen_address(const std::string& text);

/// How parsing ended: settings to run with, or an exit code (0 for --help/--version) after a
/// message was printed.
using ParseResult = std::variant<Options, int>;

/// Parses argv and the config file it names. Bad usage or config: exit code 2, message naming
/// the bad option or key.
ParseResult parse_options(int argc, char** argv);

/// The settings (by key) that differ between `running` and `fresh` and apply only after a
/// restart: all but log-level and resync-interval.
std::vector<std::string> restart_only_changes(const Options& running, const Options& fresh);

/// Re-reads only the config file (for a reload), keeping command-line overrides of `current`
/// out of it is the caller's business. Returns the error message on failure.
std::variant<Options, std::string> reload_options(int argc, char** argv);

} // namespace nsidd::daemon
