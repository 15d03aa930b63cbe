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
#include "daemon/quiet_work.hpp"
#include "daemon/server.hpp"
#include "daemon/varlink_api.hpp"
#include "mirror/engine.hpp"

namespace nsidd::daemon {

using Event = std::unique_ptr<sd_event, FnDeleter<sd_event_unref>>;

/// nsidd: its parts wired on one sd-event loop (start()): the engine, the event path, the
/// discovery timers, the Varlink API and server, the metrics exporter, the leak reports and
/// the quiet work (heap trims, a burst's line). What to do about the kernel's tables is the
/// engine's; what a call means is the API's; the daemon starts and stops the parts, drains
/// the engine's feed into the server and wakes when a state changes with time alone.
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
    void sync_metrics();
    // Settles the rows whose identity or state changed (Engine::settle), sends the changes,
    // and wakes again when a state changes with time alone.
    void settle();

    // Saves the catalog's ids for a restart (--id-cache), when they changed.
    void save_ids(bool now = false);

    static int on_signal(sd_event_source*, const signalfd_siginfo* si, void* userdata) noexcept;
    static int on_state_timer(sd_event_source*, uint64_t, void* userdata) noexcept;

    static constexpr std::uint64_t kStatusIntervalUsec = 1'000'000;

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
    QuietWork quiet_;
    std::vector<EventSource> sources_;
    EventSource state_timer_; // CLOCK_REALTIME: when a grace period ends
    std::uint64_t started_usec_ = 0;
    std::uint64_t last_status_usec_ = 0;
    bool passed_socket_ = false;
    ino_t socket_inode_ = 0; // the socket file we bound, 0: none (passed, or not yet)
    bool id_cache_warned_ = false;
    std::vector<std::string> restart_needed_; // keys the last reload changed but cannot apply
};

} // namespace nsidd::daemon
