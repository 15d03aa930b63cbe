// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace nsidd::netns {

/// A network namespace found on the system, by one path that opens it.
struct Found {
    std::string path;               ///< /run/netns/NAME or /proc/PID/ns/net
    std::uint64_t inode = 0;        ///< nsfs inode (unique among live namespaces only)
    std::vector<std::string> names; ///< every /run/netns name bound to it
    std::optional<pid_t> pid;       ///< one process inside it, if one was seen
};

/// Where to look; tests point these at a sandbox.
struct Roots {
    std::string netns_dir = "/run/netns";
    std::string proc_dir = "/proc";
};

/// Lists the network namespaces reachable under roots.netns_dir and roots.proc_dir/*/ns/net,
/// one per inode, without opening any of them (stat only). Unreadable entries are skipped.
std::vector<Found> scan(const Roots& roots = {});

/// Opens a namespace file for a short query (O_RDONLY|O_CLOEXEC). Close it promptly: an open
/// fd keeps the namespace alive.
Result<UniqueFd> open_namespace(const std::string& path);

/// The namespace's 64-bit id (NS_GET_ID, Linux >= 6.18; equal to SO_NETNS_COOKIE); never reused.
/// Fails with ENOTTY on kernels without the ioctl.
Result<std::uint64_t> namespace_cookie(int fd);

} // namespace nsidd::netns
