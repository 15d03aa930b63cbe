// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/daemon.hpp"

#include <algorithm>
#include <csignal>
#include <cstring>

#include <malloc.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "daemon/journal.hpp"
#include "util/runtimes.hpp"
#include "util/time.hpp"
#include "version.hpp"

namespace nsidd::daemon {

using mirror::ResyncReason;

Daemon::Daemon(Options options, int argc, char** argv)
    : options_(std::move(options)), argc_(argc), argv_(argv), metrics_(VarlinkApi::method_names()) {
}

Daemon::~Daemon() = default;

Result<void> Daemon::start_loop() {
    // Every client costs an fd: take all the service manager allows (the soft limit is often
    // 1024 and the hard one far higher).
    rlimit nofile{};
    if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &nofile);
    }
    sd_event* e = nullptr;
    if (int r = sd_event_new(&e); r < 0) {
        spdlog::error("Failed to create the event loop: {}", std::strerror(-r));
        return fail_errno(-r);
    }
    event_.reset(e);
    sigset_t mask;
    sigemptyset(&mask);
    for (int sig : {SIGTERM, SIGINT, SIGHUP})
        sigaddset(&mask, sig);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    sd_event_source* s = nullptr;
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
        if (int r = sd_event_add_signal(e, &s, sig, on_signal, this); r < 0) {
            spdlog::error("Failed to watch signal {}: {}", sig, std::strerror(-r));
            return fail_errno(-r);
        }
        sources_.emplace_back(s);
    }
    if (int r = sd_event_add_time_relative(e, &s, CLOCK_MONOTONIC, kQuietUsec, 10'000,
                                           on_quiet_timer, this);
        r < 0) {
        spdlog::error("Failed to add a timer: {}", std::strerror(-r));
        return fail_errno(-r);
    }
    quiet_timer_.reset(s);
    sd_event_source_set_enabled(s, SD_EVENT_OFF);
    return {};
}

Result<void> Daemon::start_engine(std::optional<UniqueFd> netlink) {
    auto kernel = NetlinkKernel::open(options_.rcvbuf, std::move(netlink));
    if (!kernel) {
        spdlog::error("Failed to subscribe to nsid events: {}", kernel.error().message());
        return fail(kernel.error());
    }
    kernel_ = std::move(*kernel);
    const auto& es = kernel_->event_socket();
    if (!es.rcvbuf_forced())
        spdlog::warn("Could not force the event socket's receive buffer (no CAP_NET_ADMIN): "
                     "{} bytes, capped by net.core.rmem_max; overruns will trigger resyncs",
                     es.rcvbuf());
    if (!es.listen_all())
        spdlog::info("NETLINK_LISTEN_ALL_NSID unavailable (no CAP_NET_BROADCAST): "
                     "only this namespace's table is visible");
    features_ = probe_kernel_features();
    mirror::Engine::Config config{{},
                                  options_.history,
                                  options_.scope == Scope::Host,
                                  options_.assign_ids,
                                  static_cast<std::uint64_t>(options_.orphan_grace * 1e6),
                                  leak_prone_paths(options_.stale_mount_paths),
                                  // Watch sequences start at the start time in microseconds:
                                  // a seq of an earlier run is never taken for one of this run.
                                  realtime_usec()};
    engine_ = std::make_unique<mirror::Engine>(*kernel_, config);
    // Ids saved by an earlier nsidd in this boot spare the kernel a question per namespace.
    if (options_.id_cache != "none" && engine_->load_ids(options_.id_cache))
        spdlog::debug("Loaded the namespace ids saved in {}", options_.id_cache);
    // Bootstrap: the event socket already queues changes; resync reads the table and then
    // applies what queued meanwhile.
    if (auto r = resync(ResyncReason::Startup); !r) {
        spdlog::error("Failed to read the nsid table at start-up");
        return r;
    }
    settle(); // no watcher yet: the states, decided before the first answer
    sd_event_source* s = nullptr;
    int r = sd_event_add_io(event_.get(), &s, kernel_->event_fd(), EPOLLIN, on_netlink_io, this);
    if (r >= 0) {
        netlink_io_.reset(s);
        // (Accuracy 1 us: 0 would be sd-event's default of 250 ms.)
        r = sd_event_add_time_relative(event_.get(), &s, CLOCK_MONOTONIC, 0, 1, on_netlink_resume,
                                       this);
    }
    if (r < 0) {
        spdlog::error("Failed to watch the event socket: {}", std::strerror(-r));
        return fail_errno(-r);
    }
    netlink_resume_.reset(s);
    sd_event_source_set_enabled(s, SD_EVENT_OFF);
    return {};
}

Result<void> Daemon::start() {
    started_usec_ = monotonic_usec();
    if (auto r = start_loop(); !r)
        return r;
    if (options_.metrics_listen != "none")
        if (auto r = metrics_.listen(event_.get(), options_.metrics_listen); !r)
            return r;
    PassedSockets passed = take_passed_sockets();
    if (auto r = start_engine(std::move(passed.netlink)); !r)
        return r;
    if (auto r = start_server(std::move(passed.varlink)); !r)
        return r;
    arm_resync_timer();
    if (auto r = start_discovery(); !r)
        return r;
    sd_event_set_watchdog(event_.get(), true);
    log_started();
    sd_notify(0, "READY=1");
    notify_status();
    return {};
}

void Daemon::log_started() {
    const auto& reg = engine_->registry();
    const auto& st = engine_->stats();
    log_notable(
        Notable::Started, spdlog::level::info,
        fmt::format("Mirroring {} nsid entries in {} tables (bootstrap read {} probes, opened "
                    "{} namespaces, knew {} mounts by their saved ids, dump {}); serving {}; "
                    "ready in {} ms",
                    reg.entry_count(), reg.tables().size(), st.last_probes,
                    engine_->catalog().stats().opened, engine_->catalog().stats().by_saved_mount,
                    st.last_dump_truncated ? "truncated" : "complete",
                    passed_socket_ ? "the socket passed by the service manager" : options_.socket,
                    (monotonic_usec() - started_usec_) / 1000));
}

int Daemon::run() {
    if (auto r = start(); !r)
        return 1; // each step logged why it failed

    const int r = loop();
    sd_notify(0, "STOPPING=1");
    save_ids(true); // its time bounds the deaths the next start finds
    server_.reset();
    remove_socket();
    if (r < 0) {
        spdlog::error("Failed to run the event loop: {}", std::strerror(-r));
        return 1;
    }
    log_notable(Notable::Stopped, spdlog::level::info, "Stopped");
    return r;
}

void Daemon::remove_socket() {
    // Our own socket file only: not a passed one (the service manager owns it), and not one that
    // another process put there since.
    struct stat st {};
    if (socket_inode_ != 0 && ::lstat(options_.socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_ino == socket_inode_)
        ::unlink(options_.socket.c_str());
}

void Daemon::notify_status() {
    // Rate-limited: a storm of batches must not become a storm of notifications.
    const auto now = monotonic_usec();
    if (now - last_status_usec_ < kStatusIntervalUsec)
        return;
    last_status_usec_ = now;
    const auto& reg = engine_->registry();
    sd_notifyf(0, "STATUS=Mirroring %zu entries in %zu tables; %llu overruns, %llu resyncs",
               reg.entry_count(), reg.tables().size(),
               static_cast<unsigned long long>(kernel_->stats().overruns),
               static_cast<unsigned long long>(engine_->stats().resyncs_total()));
}

void Daemon::sync_metrics() {
    metrics_.sync({*engine_, kernel_->stats(), server_.get(), api_ ? api_->denials() : 0,
                   storm_gate_.pauses()});
}

int Daemon::loop() {
    // sd_event_loop, plus one step after each dispatch: states settled and metrics brought up
    // to date in one place. (A post source would do the same at the cost of one more loop
    // iteration, an epoll_wait and the timers' rearming, per wakeup: in a storm, per event.)
    sd_event* e = event_.get();
    for (;;) {
        const int r = sd_event_run(e, UINT64_MAX);
        if (r < 0)
            return r;
        if (sd_event_get_state(e) == SD_EVENT_FINISHED) {
            int code = 0;
            sd_event_get_exit_code(e, &code);
            return code;
        }
        if (r > 0 && engine_) {
            settle();
            sync_metrics();
        }
    }
}

int Daemon::on_netlink_io(sd_event_source* s, int, uint32_t, void* userdata) noexcept {
    auto* self = static_cast<Daemon*>(userdata);
    const auto now = monotonic_usec();
    const auto events = self->on_netlink();
    // In a storm, the socket is left alone for a moment: its events queue up and the next
    // wakeup reads them together (docs/design.md, "Storms").
    if (const auto pause = self->storm_gate_.read(now, events)) {
        sd_event_source_set_enabled(s, SD_EVENT_OFF);
        sd_event_source_set_time_relative(self->netlink_resume_.get(), pause);
        sd_event_source_set_enabled(self->netlink_resume_.get(), SD_EVENT_ONESHOT);
    }
    return 0;
}

int Daemon::on_netlink_resume(sd_event_source* s, uint64_t, void* userdata) noexcept {
    auto* self = static_cast<Daemon*>(userdata);
    // The read the pause waited for is done here, with the socket still off: while the storm
    // lasts, a wakeup per pause and no switching the socket on and off again.
    const auto now = monotonic_usec();
    if (const auto pause = self->storm_gate_.resumed(now, self->on_netlink())) {
        sd_event_source_set_time_relative(s, pause);
        sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
    } else {
        sd_event_source_set_enabled(self->netlink_io_.get(), SD_EVENT_ON);
    }
    return 0;
}

std::size_t Daemon::on_netlink() {
    if (resync_timer_pending_) {
        // An overrun resync is due: the snapshot it takes supersedes whatever is read now.
        kernel_->discard();
        return 0;
    }
    const auto applied = engine_->apply_events();
    if (applied.events > 0 && !applied.lost)
        metrics_.observe_batch(applied.events);
    send_changes();
    release_memory(applied.changes);
    if (engine_->refresh_due())
        schedule_discovery();
    if (applied.lost) {
        log_notable(Notable::Overrun, spdlog::level::warn,
                    fmt::format("Lost nsid events (receive buffer overrun or malformed message, "
                                "{} overruns so far); resyncing",
                                kernel_->stats().overruns));
        overrun_resync();
    }
    notify_status();
    return applied.events;
}

void Daemon::overrun_resync() {
    // Overruns come in storms, and reading a large table costs: resync at once, or, if the
    // last one ended recently, once it has been idle ten times as long as it took. The mirror
    // is exact again shortly after the storm, without resyncing through all of it.
    const auto& st = engine_->stats();
    const auto now = monotonic_usec();
    const auto earliest =
        last_resync_end_usec_ +
        std::min<std::uint64_t>(st.last_resync_duration_usec * 10, kMaxResyncBackoffUsec);
    if (last_resync_end_usec_ == 0 || now >= earliest) {
        (void)resync(ResyncReason::Overrun);
        return;
    }
    defer_resync(earliest - now);
}

void Daemon::defer_resync(std::uint64_t delay_usec) {
    // Until it runs, events read are dropped: the snapshot it takes supersedes them.
    resync_timer_pending_ = true;
    if (overrun_timer_) {
        sd_event_source_set_time_relative(overrun_timer_.get(), delay_usec);
        sd_event_source_set_enabled(overrun_timer_.get(), SD_EVENT_ONESHOT);
        return;
    }
    sd_event_source* s = nullptr;
    if (sd_event_add_time_relative(event_.get(), &s, CLOCK_MONOTONIC, delay_usec, 1000,
                                   on_overrun_timer, this) < 0) {
        resync_timer_pending_ = false;
        return; // the next overrun or the periodic resync tries again
    }
    overrun_timer_.reset(s);
}

int Daemon::on_overrun_timer(sd_event_source*, uint64_t, void* userdata) noexcept {
    auto* self = static_cast<Daemon*>(userdata);
    self->kernel_->discard();
    (void)self->resync(ResyncReason::Overrun);
    self->notify_status();
    return 0;
}

Result<void> Daemon::resync(ResyncReason reason) {
    // Whatever the reason, this snapshot supersedes a deferred overrun resync.
    resync_timer_pending_ = false;
    if (overrun_timer_)
        sd_event_source_set_enabled(overrun_timer_.get(), SD_EVENT_OFF);
    auto changes = engine_->resync(reason);
    last_resync_end_usec_ = monotonic_usec();
    if (!changes) {
        // Events kept overflowing while the table was read (a storm still going), or the
        // kernel did not answer: the mirror is not exact, so try again until it is.
        spdlog::warn("Failed to resync the nsid table ({}): {}; trying again", to_string(reason),
                     changes.error().message());
        if (reason != ResyncReason::Startup)
            defer_resync(kRetryResyncUsec);
        return fail(changes.error());
    }
    const auto& st = engine_->stats();
    metrics_.observe_resync(st.last_resync_duration_usec);
    if (reason != ResyncReason::Startup)
        log_notable(Notable::Resync, *changes == 0 ? spdlog::level::debug : spdlog::level::info,
                    fmt::format("Resynced ({}) in {} us with {} probes: {} changes",
                                to_string(reason), st.last_resync_duration_usec, st.last_probes,
                                *changes));
    send_changes();
    // A large read's temporaries (probe lists, scan results) would otherwise stay resident.
    release_memory(st.last_probes);
    return {};
}

void Daemon::release_memory(std::size_t items) {
    // Counted across calls: a storm of small batches frees as much as one large one. The walk
    // of the heap waits for a quiet moment: one trim per storm, not one per thousand events.
    trim_debt_ += items;
    if (trim_debt_ >= kTrimThreshold)
        after_quiet();
}

void Daemon::trim_now() {
    ::malloc_trim(0);
    trim_debt_ = 0;
}

void Daemon::after_quiet() {
    last_work_usec_ = monotonic_usec();
    if (!quiet_timer_)
        return;
    int enabled = SD_EVENT_OFF;
    sd_event_source_get_enabled(quiet_timer_.get(), &enabled);
    if (enabled == SD_EVENT_OFF) {
        quiet_due_usec_ = last_work_usec_;
        sd_event_source_set_time_relative(quiet_timer_.get(), kQuietUsec);
        sd_event_source_set_enabled(quiet_timer_.get(), SD_EVENT_ONESHOT);
    }
}

int Daemon::on_quiet_timer(sd_event_source* s, uint64_t, void* userdata) noexcept {
    auto* self = static_cast<Daemon*>(userdata);
    const auto now = monotonic_usec();
    // Work went on since it was armed: wait for a quiet moment again (one timer wakeup per
    // kQuietUsec of storm, not a rearm per event), unless it has waited long already.
    if (now - self->last_work_usec_ < kQuietUsec &&
        now - self->quiet_due_usec_ < kQuietLatestUsec) {
        sd_event_source_set_time_relative(s, self->last_work_usec_ + kQuietUsec - now);
        sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
    }
    if (self->burst_deaths_ >= kBurstToLog)
        log_notable(Notable::DeathBurst, spdlog::level::info,
                    fmt::format("{} peer namespaces died in a burst, purged in {} sweeps",
                                self->burst_deaths_, self->burst_sweeps_));
    self->burst_deaths_ = self->burst_sweeps_ = 0;
    if (self->trim_debt_ >= kTrimThreshold)
        self->trim_now();
    return 0;
}

void Daemon::arm_resync_timer() {
    if (options_.resync_interval == 0) {
        resync_timer_.reset();
        return;
    }
    const std::uint64_t usec = std::uint64_t{options_.resync_interval} * 1'000'000u;
    if (resync_timer_) {
        sd_event_source_set_time_relative(resync_timer_.get(), usec);
        sd_event_source_set_enabled(resync_timer_.get(), SD_EVENT_ONESHOT);
        return;
    }
    sd_event_source* s = nullptr;
    if (sd_event_add_time_relative(event_.get(), &s, CLOCK_MONOTONIC, usec, 1'000'000,
                                   on_resync_timer, this) >= 0)
        resync_timer_.reset(s);
}

int Daemon::on_resync_timer(sd_event_source*, uint64_t, void* userdata) noexcept {
    auto* self = static_cast<Daemon*>(userdata);
    (void)self->resync(ResyncReason::Periodic);
    self->arm_resync_timer();
    self->notify_status();
    return 0;
}

int Daemon::on_signal(sd_event_source* s, const signalfd_siginfo* si, void* userdata) noexcept {
    auto* self = static_cast<Daemon*>(userdata);
    if (si->ssi_signo == SIGHUP) {
        self->reload(); // logs its outcome
        return 0;
    }
    sd_event_exit(sd_event_source_get_event(s), 0);
    return 0;
}

std::optional<std::string> Daemon::reload() {
    sd_notify(0, "RELOADING=1");
    auto parsed = reload_options(argc_, argv_);
    if (auto* err = std::get_if<std::string>(&parsed)) {
        // Whoever asked (SIGHUP, Varlink), the running settings stay and the log says why.
        spdlog::error("Failed to reload the configuration: {}", *err);
        sd_notify(0, "READY=1");
        return *err;
    }
    auto& fresh = std::get<Options>(parsed);
    restart_needed_ = restart_only_changes(options_, fresh);
    if (!restart_needed_.empty())
        spdlog::warn("Reloaded settings that apply only after a restart: {}",
                     fmt::join(restart_needed_, ", "));
    // Applied live: log level and resync interval. The rest needs a restart.
    set_log_level(fresh.log_level);
    options_.log_level = fresh.log_level;
    if (fresh.resync_interval != options_.resync_interval) {
        options_.resync_interval = fresh.resync_interval;
        arm_resync_timer();
    }
    spdlog::info("Reloaded the configuration");
    sd_notify(0, "READY=1");
    return std::nullopt;
}

} // namespace nsidd::daemon
