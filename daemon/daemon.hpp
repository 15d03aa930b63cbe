// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <tuple>
#include <vector>

#include <systemd/sd-event.h>

#include "daemon/activation.hpp"
#include "daemon/discovery_timers.hpp"
#include "daemon/event_path.hpp"
#include "daemon/leak_reports.hpp"
#include "daemon/netlink_kernel.hpp"
#include "daemon/metrics.hpp"
#include "daemon/options.hpp"
#include "daemon/server.hpp"
#include "daemon/varlink_api.hpp"
#include "mirror/engine.hpp"

namespace nsidd::daemon {

using Event = std::unique_ptr<sd_event, FnDeleter<sd_event_unref>>;

/// nsidd: its parts wired on one sd-event loop (start()): the engine, the event path, the
/// discovery timers, the Varlink API and server, the metrics exporter and the leak reports.
/// What to do about the kernel's tables is the engine's; what a call means is the API's; the
/// daemon starts and stops the parts, drains the engine's feed and keeps the heap small.
class Daemon : private EventPath::Host, private DiscoveryTimers::Host {
public:
    Daemon(Options options, int argc, char** argv);
    ~Daemon();

    /// Starts (subscribe, bootstrap, listen, READY=1), runs until SIGTERM/SIGINT and returns
    /// the exit code: 0 clean stop, 1 runtime failure (logged with its reason).
    int run();

private:
    // Start-up, in order; each failure is logged where it happens (daemon.cpp).
    Result<void> start();
    Result<void> start_loop();
    // Runs the loop until it exits; returns its exit code, or a negative errno.
    int loop();
    Result<void> start_engine(std::optional<UniqueFd> netlink);
    // The Varlink listener, API and server (serve.cpp).
    Result<void> start_server(std::optional<UniqueFd> varlink);
    VarlinkApi::Hooks api_hooks();
    void log_started();
    // Removes the socket file that start_server() created, if it is still ours.
    void remove_socket();

    // What the event path tells (EventPath::Host).
    void changed(std::size_t work) override;
    void ids_unexplained() override;
    void stepped() override;
    // What discovery tells (DiscoveryTimers::Host): the leaks newly decided, the id cache,
    // the namespace count.
    void pass_ended(std::size_t namespaces) override;
    void search_ended() override;
    // Drains the engine's feed: each new change to every Watch client, and deaths counted
    // toward the burst's log line.
    void send_changes();
    std::optional<std::string> reload();
    varlink::Json status() const; // (serve.cpp)
    void notify_status();
    // Returns freed heap to the system once work on many entries has added up, when that
    // work pauses.
    void release_memory(std::size_t items);
    // Returns freed heap to the system now (a large answer was sent and freed: one event,
    // not a storm).
    void trim_now();
    // Arms the quiet timer: once no work came for kQuietUsec, the heap is trimmed and a burst
    // of deaths logged (on_quiet_timer).
    void after_quiet();
    void sync_metrics();
    // Settles the rows whose identity or state changed (Engine::settle), sends the changes,
    // and wakes again when a state changes with time alone.
    void settle();

    // Saves the catalog's ids for a restart (--id-cache), when they changed.
    void save_ids(bool now = false);

    static int on_signal(sd_event_source*, const signalfd_siginfo* si, void* userdata) noexcept;
    static int on_state_timer(sd_event_source*, uint64_t, void* userdata) noexcept;
    static int on_quiet_timer(sd_event_source*, uint64_t, void* userdata) noexcept;

    static constexpr std::size_t kTrimThreshold = 1000;
    // The quiet timer fires once no work came for this long, or this long after it was armed.
    static constexpr std::uint64_t kQuietUsec = 100'000;
    static constexpr std::uint64_t kQuietLatestUsec = 2'000'000;
    // An output buffer at least this large freed (an answer of ~1000 rows): trim. Smaller ones,
    // and most Watch backlogs, are not worth a walk of the heap.
    static constexpr std::size_t kTrimAfterBytes = 256 * 1024;
    static constexpr std::uint64_t kStatusIntervalUsec = 1'000'000;
    static constexpr std::size_t kBurstToLog = 10;

    Options options_;
    int argc_;
    char** argv_;
    Event event_;
    std::unique_ptr<NetlinkKernel> kernel_;
    std::unique_ptr<mirror::Engine> engine_;
    std::unique_ptr<EventPath> events_;
    std::unique_ptr<DiscoveryTimers> discovery_;
    std::unique_ptr<VarlinkApi> api_;
    std::unique_ptr<Server> server_;
    Metrics metrics_;
    KernelFeatures features_;
    LeakReports leak_reports_;
    std::vector<EventSource> sources_;
    EventSource state_timer_; // CLOCK_REALTIME: when a grace period ends
    EventSource quiet_timer_; // once work pauses: the trim, the burst's log line
    std::uint64_t started_usec_ = 0;
    std::size_t trim_debt_ = 0;         // entries worked on since the last malloc_trim
    std::uint64_t quiet_due_usec_ = 0;  // when the quiet timer was armed (CLOCK_MONOTONIC)
    std::uint64_t last_work_usec_ = 0;  // when work it waits for last came
    std::size_t burst_deaths_ = 0;      // self's peers dead since the last quiet moment
    std::size_t burst_sweeps_ = 0;      // in this many sweeps
    std::uint64_t last_death_usec_ = 0; // when the last of them died (CLOCK_MONOTONIC)
    std::uint64_t last_status_usec_ = 0;
    bool passed_socket_ = false;
    ino_t socket_inode_ = 0; // the socket file we bound, 0: none (passed, or not yet)
    bool id_cache_warned_ = false;
    std::vector<std::string> restart_needed_; // keys the last reload changed but cannot apply
};

} // namespace nsidd::daemon
