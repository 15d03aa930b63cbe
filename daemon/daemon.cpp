// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/daemon.hpp"

#include <algorithm>
#include <csignal>
#include <cstring>

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
    return quiet_.start(e);
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
    EventPath::Host& host = *this;
    events_ = std::make_unique<EventPath>(event_.get(), *kernel_, *engine_, metrics_, host);
    if (auto r = events_->resync(ResyncReason::Startup); !r) {
        spdlog::error("Failed to read the nsid table at start-up");
        return r;
    }
    settle(); // no watcher yet: the states, decided before the first answer
    // No client can resume from before now: what the start-up read need not be kept.
    engine_->feed().forget_drained();
    return events_->start(options_.resync_interval);
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
    DiscoveryTimers::Host& host = *this;
    discovery_ = std::make_unique<DiscoveryTimers>(event_.get(), *kernel_, *engine_, *events_,
                                                   options_.discovery_interval, host);
    if (auto r = discovery_->start(); !r)
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
    metrics_.sync(
        {*engine_, kernel_->stats(), server_.get(), api_ ? api_->denials() : 0, events_->pauses()});
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

void Daemon::changed(std::size_t work) {
    send_changes();
    quiet_.worked(work);
}

void Daemon::ids_unexplained() {
    if (discovery_) // (none yet while the bootstrap reads the table)
        discovery_->schedule();
}

void Daemon::pass_ended(std::size_t namespaces) {
    search_ended(); // the leaks the pass just decided, told as a search's are
    save_ids();
    metrics_.set_namespaces(namespaces, read_netns_limit());
    quiet_.worked(namespaces);
}

void Daemon::search_ended() {
    settle(); // the states just decided
    leak_reports_.report(*engine_, options_.orphan_grace);
}

void Daemon::stepped() {
    notify_status();
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
        events_->set_resync_interval(fresh.resync_interval);
    }
    spdlog::info("Reloaded the configuration");
    sd_notify(0, "READY=1");
    return std::nullopt;
}

void Daemon::send_changes() {
    auto& feed = engine_->feed();
    if (!feed.pending())
        return;
    std::size_t deaths = 0;
    daemon::send_changes(feed, server_.get(), [&](const mirror::Feed::Item& item) {
        deaths += item.kind == mirror::Feed::Kind::Del && item.observer == registry::kSelf;
    });
    if (deaths > 0)
        quiet_.died(deaths);
}

void Daemon::settle() {
    if (!engine_)
        return;
    engine_->settle();
    send_changes();
    const auto at = engine_->next_state_change_usec();
    if (at == 0) {
        if (state_timer_)
            sd_event_source_set_enabled(state_timer_.get(), SD_EVENT_OFF);
        return;
    }
    if (state_timer_) {
        // Unchanged, it stays as it is: setting a time rearms the loop's timer (a system call).
        std::uint64_t armed = 0;
        int enabled = SD_EVENT_OFF;
        sd_event_source_get_time(state_timer_.get(), &armed);
        sd_event_source_get_enabled(state_timer_.get(), &enabled);
        if (armed != at || enabled != SD_EVENT_ONESHOT) {
            sd_event_source_set_time(state_timer_.get(), at);
            sd_event_source_set_enabled(state_timer_.get(), SD_EVENT_ONESHOT);
        }
        return;
    }
    sd_event_source* s = nullptr;
    if (sd_event_add_time(event_.get(), &s, CLOCK_REALTIME, at, 10'000, on_state_timer, this) >= 0)
        state_timer_.reset(s);
}

int Daemon::on_state_timer(sd_event_source*, uint64_t, void* userdata) noexcept {
    static_cast<Daemon*>(userdata)->settle();
    return 0;
}

void Daemon::save_ids(bool now) {
    if (options_.id_cache == "none" || !engine_)
        return;
    auto saved = engine_->save_ids(options_.id_cache, now);
    if (saved)
        return;
    // Once per run: a missing directory stays missing.
    if (!id_cache_warned_)
        spdlog::warn("Cannot save namespace ids to {} ({}); restarts will ask the kernel again",
                     options_.id_cache, saved.error().message());
    id_cache_warned_ = true;
}

} // namespace nsidd::daemon
