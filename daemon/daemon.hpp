// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include <systemd/sd-event.h>

#include "daemon/metrics.hpp"
#include "daemon/mirror.hpp"
#include "daemon/options.hpp"
#include "daemon/server.hpp"

namespace nsidd::daemon {

using Event = std::unique_ptr<sd_event, FnDeleter<sd_event_unref>>;

/// nsidd: the mirror, the Varlink server, signals and timers on one sd-event loop.
class Daemon {
public:
    Daemon(Options options, int argc, char** argv);
    ~Daemon();

    /// Starts (subscribe, bootstrap, listen, READY=1), runs until SIGTERM/SIGINT and returns
    /// the exit code: 0 clean stop, 1 runtime failure.
    int run();

private:
    Result<void> start();
    void on_netlink();
    void resync(ResyncReason reason);
    // After an overrun: resync now, or later if the last one was recent (see .cpp).
    void overrun_resync();
    // Saves the catalog's ids for a restart (--id-cache), when they changed.
    void save_ids();
    // After a discovery pass: warns once of each peer newly orphaned.
    void report_orphans();
    std::set<std::pair<registry::Nsid, std::uint64_t>> orphans_; // reported: (nsid, since)
    static constexpr std::size_t kOrphansToLog = 10;
    bool id_cache_warned_ = false;
    static int on_overrun_timer(sd_event_source*, uint64_t, void* userdata) noexcept;
    static constexpr std::uint64_t kMaxResyncBackoffUsec = 2'000'000;
    static constexpr std::uint64_t kRetryResyncUsec = 200'000;
    // Runs an overrun resync after `delay_usec`, dropping the events read until then.
    void defer_resync(std::uint64_t delay_usec);
    void publish(std::vector<registry::Change> changes);
    void dispatch(Server::Peer& peer, const varlink::Call& call);
    void call(Server::Peer& peer, const varlink::Call& call);
    varlink::Json status() const;
    std::uint64_t resync_total() const;
    std::optional<std::string> reload();
    void arm_resync_timer();
    void notify_status();
    // Returns freed heap to the system once work on many entries has added up.
    void release_memory(std::size_t items);
    static constexpr std::size_t kTrimThreshold = 1000;

    static int on_netlink_io(sd_event_source*, int, uint32_t, void* userdata) noexcept;
    static int on_signal(sd_event_source*, const signalfd_siginfo* si, void* userdata) noexcept;
    static int on_resync_timer(sd_event_source*, uint64_t, void* userdata) noexcept;
    // Discovery: mount changes (rescanned once per burst) and the periodic /proc pass.
    Result<void> start_discovery();
    static int on_mounts(sd_event_source*, int, uint32_t, void* userdata) noexcept;
    // Runs the mount rescan (and the deferred id refresh) shortly, once per burst.
    void schedule_discovery();
    static int on_mounts_timer(sd_event_source*, uint64_t, void* userdata) noexcept;
    static int on_discovery_timer(sd_event_source*, uint64_t, void* userdata) noexcept;
    static constexpr std::uint64_t kMountDelayUsec = 50'000; // the shortest
    std::uint64_t mount_delay_usec_ = kMountDelayUsec;
    bool mounts_changed_ = false;
    // Longest stretch of GETs for unexplained ids before the loop serves others again.
    static constexpr std::uint64_t kRefreshSliceUsec = 5'000;
    static constexpr std::size_t kProcessesPerSlice = 2048;

    Options options_;
    int argc_;
    char** argv_;
    Event event_;
    std::unique_ptr<Mirror> mirror_;
    std::unique_ptr<Server> server_;
    Metrics metrics_;
    UniqueFd mountinfo_; // watched for mount changes (before sources_: outlives its source)
    std::vector<EventSource> sources_;
    EventSource resync_timer_;
    EventSource mounts_timer_;
    EventSource overrun_timer_;
    bool resync_timer_pending_ = false;
    std::uint64_t last_resync_end_usec_ = 0; // CLOCK_MONOTONIC
    EventSource discovery_timer_;
    std::uint64_t started_usec_ = 0;
    std::uint64_t seq_ = 0; // Watch sequence: one per published change
    std::uint64_t denials_ = 0;
    std::size_t trim_debt_ = 0; // entries worked on since the last malloc_trim
    std::uint64_t last_status_usec_ = 0;
    bool passed_socket_ = false;
    static constexpr std::uint64_t kStatusIntervalUsec = 1'000'000;
    static constexpr std::size_t kBurstToLog = 10;
    bool ns_get_id_ = false;
    bool dump_truncation_ = false;
};

} // namespace nsidd::daemon
