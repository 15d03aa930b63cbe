// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "mirror/kernel.hpp"
#include "netlink/socket.hpp"
#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace nsidd::daemon {

/// What the event socket saw, for status and metrics.
struct EventStats {
    std::uint64_t datagrams = 0;
    std::uint64_t overruns = 0;       ///< ENOBUFS on the event socket
    std::uint64_t malformed = 0;      ///< datagrams that failed to parse (each forces a resync)
    std::uint64_t not_kernel = 0;     ///< datagrams not sent by the kernel, dropped
    std::uint64_t foreign_events = 0; ///< events from other namespaces' tables
    std::uint64_t nsid_events = 0;    ///< local RTM_NEWNSID/RTM_DELNSID received
    std::uint64_t new_events = 0;     ///< of which RTM_NEWNSID
    std::uint64_t del_events = 0;     ///< of which RTM_DELNSID
};

/// The engine's kernel, on rtnetlink: the RTNLGRP_NSID subscription, a request socket for dumps
/// and GETs, and NS_GET_ID. The one place where decoded messages become registry operations.
class NetlinkKernel final : public mirror::Kernel {
public:
    /// Subscribes to RTNLGRP_NSID first (on `event_fd` when the service manager passed one), then
    /// opens the request socket.
    static Result<std::unique_ptr<NetlinkKernel>> open(int rcvbuf,
                                                       std::optional<UniqueFd> event_fd);

    Events receive() override;
    Result<Dump> dump(std::optional<mirror::Observer> target) override;
    Result<std::vector<std::optional<mirror::Nsid>>>
    translate(std::span<const mirror::Nsid> self_ids,
              std::optional<mirror::Observer> target) override;
    std::optional<mirror::Nsid> own_id() override;
    std::optional<mirror::Nsid> own_id_in(mirror::Observer target) override;
    Result<std::uint64_t> cookie(int fd) override;
    Result<std::vector<std::optional<std::int32_t>>> ids_of(std::span<const int> fds) override;
    Result<void> assign(int fd) override;

    /// Reads and drops every queued datagram (a resync that supersedes them is due). Returns
    /// how many were read.
    std::size_t discard();

    int event_fd() const noexcept { return events_.fd(); }
    const netlink::EventSocket& event_socket() const noexcept { return events_; }
    const EventStats& stats() const noexcept { return stats_; }

private:
    NetlinkKernel(netlink::EventSocket events, netlink::RequestSocket requests)
        : events_(std::move(events)), requests_(std::move(requests)) {}
    // Appends one datagram's nsid events to `out`; false when it did not parse.
    bool decode(const netlink::Datagram& d, Events& out);

    netlink::EventSocket events_;
    netlink::RequestSocket requests_;
    EventStats stats_;
    std::optional<std::int32_t> own_id_; // our netns's id in its own table, if any
};

} // namespace nsidd::daemon
