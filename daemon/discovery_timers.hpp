// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include <systemd/sd-event.h>

#include "daemon/event_path.hpp"
#include "daemon/fd_search.hpp"
#include "daemon/netlink_kernel.hpp"
#include "daemon/server.hpp"
#include "mirror/engine.hpp"
#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace nsidd::daemon {

/// When discovery runs, on the loop: the mount table on each change (once per burst, backing
/// off with its cost), the /proc pass in slices every --discovery-interval, the rounds of
/// questions for ids no known namespace explains (in slices that yield to queued events), and
/// fd searches in a process of their own. What discovery finds and what it means is the
/// engine's (lib/mirror); the rest of the daemon hears of a pass's end through Host.
class DiscoveryTimers {
public:
    /// What discovery tells the rest of the daemon.
    class Host {
    public:
        /// A /proc pass ended, having met `namespaces` namespaces.
        virtual void pass_ended(std::size_t namespaces) = 0;
        /// An fd search's findings were taken.
        virtual void search_ended() = 0;

    protected:
        ~Host() = default;
    };

    /// All must outlive it. Nothing runs until start().
    DiscoveryTimers(sd_event* event, NetlinkKernel& kernel, mirror::Engine& engine,
                    EventPath& events, double interval_sec, Host& host)
        : event_(event), kernel_(kernel), engine_(engine), events_(events),
          interval_usec_(static_cast<std::uint64_t>(interval_sec * 1e6)), host_(host) {}

    /// Watches the mount table and starts the first pass (after READY=1: at the loop's start).
    Result<void> start();
    /// Ids arrived that no known namespace explains: a round of questions soon (with the next
    /// mount rescan, which may explain them without one).
    void schedule();

private:
    static int on_mounts(sd_event_source*, int, uint32_t, void* userdata) noexcept;
    static int on_mounts_timer(sd_event_source*, uint64_t, void* userdata) noexcept;
    static int on_refresh_timer(sd_event_source*, uint64_t, void* userdata) noexcept;
    static int on_pass_timer(sd_event_source*, uint64_t, void* userdata) noexcept;
    void on_mounts_due();
    // A slice of a round of questions for ids no known namespace explains.
    void refresh_slice();
    void pass_slice(sd_event_source* s);
    // Whether nsid events are queued on the event socket (polled: long work yields to them).
    bool events_waiting() const;
    void resync_if_replaced();
    // Starts the fd search the engine wants, in its own process (fd_search.hpp).
    void start_fd_search();
    void on_fd_search_done(netns::FdFound found);

    static constexpr std::uint64_t kMountDelayUsec = 50'000; // the shortest
    // Longest stretch of questions for unexplained ids before the loop serves others again.
    static constexpr std::uint64_t kRefreshSliceUsec = 1'000;
    // ~2-4 ms of /proc on a host with thousands of processes (bench/README.md, "Holder passes").
    static constexpr std::size_t kProcessesPerSlice = 512;

    sd_event* event_;
    NetlinkKernel& kernel_;
    mirror::Engine& engine_;
    EventPath& events_;
    std::uint64_t interval_usec_;
    Host& host_;
    UniqueFd mountinfo_;       // watched for mount changes (before its source: outlives it)
    EventSource mounts_watch_; // on mountinfo_: off while a rescan is pending
    EventSource mounts_timer_;
    EventSource refresh_timer_; // the next slice of an unfinished round of questions
    EventSource pass_timer_;
    std::uint64_t mount_delay_usec_ = kMountDelayUsec;
    bool mounts_changed_ = false;
    std::unique_ptr<FdSearchRunner> fd_search_;
    bool fd_search_warned_ = false; // a search given up was logged
    bool copies_denied_warned_ = false;
};

} // namespace nsidd::daemon
