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

/// Where to look; tests point these at a sandbox.
struct Roots {
    std::string netns_dir = "/run/netns";
    std::string proc_dir = "/proc";
};

/// Opens a namespace file for a short query (O_RDONLY|O_CLOEXEC). Close it promptly: an open
/// fd keeps the namespace alive.
Result<UniqueFd> open_namespace(const std::string& path);

/// The command name of process `pid` under `proc_dir` (/proc/PID/comm, without its newline);
/// empty when it is gone.
std::string process_comm(const std::string& proc_dir, pid_t pid);

/// The namespace's 64-bit id (NS_GET_ID, Linux >= 6.18; equal to SO_NETNS_COOKIE); never reused.
/// Fails with ENOTTY on kernels without the ioctl.
Result<std::uint64_t> namespace_cookie(int fd);

} // namespace nsidd::netns
