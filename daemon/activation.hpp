// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstdint>
#include <optional>

#include "util/unique_fd.hpp"

namespace nsidd::daemon {

/// Sockets passed by the service manager, by FileDescriptorName= ("varlink", "netlink").
struct PassedSockets {
    std::optional<UniqueFd> varlink;
    std::optional<UniqueFd> netlink;
};

/// Takes the sockets the service manager passed (sd_listen_fds); closes any other passed fd.
PassedSockets take_passed_sockets();

/// What the running kernel does, for GetStatus.
struct KernelFeatures {
    bool dump_truncation = false; ///< nsid dumps end after one skb (Linux >= 6.10)
    bool ns_get_id = false;       ///< NS_GET_ID gives namespace cookies (Linux >= 6.18)
};
KernelFeatures probe_kernel_features();

/// /proc/sys/user/max_net_namespaces, when readable.
std::optional<std::uint64_t> read_netns_limit();

} // namespace nsidd::daemon
