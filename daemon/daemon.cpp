// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/daemon.hpp"

#include <algorithm>
#include <set>

#include <csignal>
#include <cstdio>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <malloc.h>
#include <sys/utsname.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "daemon/api.hpp"
#include "daemon/journal.hpp"
#include "netns/discovery.hpp"
#include "util/time.hpp"
#include "version.hpp"

namespace nsidd::daemon {
namespace {

using varlink::Json;

std::string reason_text(const std::error_code& ec) {
    return ec.message();
}

// Linux >= 6.10 answers an nsid dump with one skb only (KERNEL-NSID.md §4.3).
bool kernel_truncates_dumps() {
    utsname u{};
    if (::uname(&u) < 0)
        return true;
    int major = 0, minor = 0;
    if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2)
        return true;
    return major > 6 || (major == 6 && minor >= 10);
}

std::optional<std::uint64_t> read_netns_limit() {
    std::FILE* f = std::fopen("/proc/sys/user/max_net_namespaces", "re");
    if (f == nullptr)
        return std::nullopt;
    unsigned long long v = 0;
    const bool ok = std::fscanf(f, "%llu", &v) == 1;
    std::fclose(f);
    return ok ? std::optional<std::uint64_t>(v) : std::nullopt;
}

bool kernel_has_ns_get_id() {
    auto fd = netns::open_namespace("/proc/self/ns/net");
    return fd && netns::namespace_cookie(fd->get()).has_value();
}

// Sockets passed by the service manager, by FileDescriptorName= ("varlink", "netlink").
struct Passed {
    std::optional<UniqueFd> varlink;
    std::optional<UniqueFd> netlink;
};

Passed take_passed_fds() {
    Passed passed;
    char** names = nullptr;
    const int n = sd_listen_fds_with_names(1, &names);
    for (int i = 0; i < n; ++i) {
        const int fd = SD_LISTEN_FDS_START + i;
        const std::string name = names && names[i] ? names[i] : "";
        if (sd_is_socket(fd, AF_NETLINK, SOCK_RAW, -1) > 0 &&
            (name == "netlink" || name.empty() || name == "unknown"))
            passed.netlink.emplace(fd);
        else if (sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) > 0)
            passed.varlink.emplace(fd);
        else {
            spdlog::warn("Ignoring passed file descriptor {} ({}): not a socket nsidd uses", fd,
                         name);
            if (::fcntl(fd, F_GETFD) >= 0)
                ::close(fd);
        }
    }
    if (names) {
        for (int i = 0; i < n; ++i)
            std::free(names[i]);
        std::free(names);
    }
    return passed;
}

} // namespace

Daemon::Daemon(Options options, int argc, char** argv)
    : options_(std::move(options)), argc_(argc), argv_(argv) {}

Daemon::~Daemon() = default;

Result<void> Daemon::start() {
    started_usec_ = monotonic_usec();
    sd_event* e = nullptr;
    if (int r = sd_event_new(&e); r < 0)
        return fail_errno(-r);
    event_.reset(e);

    sigset_t mask;
    sigemptyset(&mask);
    for (int sig : {SIGTERM, SIGINT, SIGHUP})
        sigaddset(&mask, sig);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
        sd_event_source* s = nullptr;
        if (int r = sd_event_add_signal(e, &s, sig, on_signal, this); r < 0)
            return fail_errno(-r);
        sources_.emplace_back(s);
    }

    if (options_.metrics_listen != "none") {
        if (auto err = metrics_.listen(options_.metrics_listen)) {
            spdlog::error("Failed to listen for metrics on {}: {}", options_.metrics_listen, *err);
            return fail(Errc::Closed);
        }
    }

    Passed passed = take_passed_fds();
    Mirror::Config config;
    config.rcvbuf = options_.rcvbuf;
    config.history = options_.history;
    config.host = options_.scope == Scope::Host;
    config.assign_ids = options_.assign_ids;
    config.orphan_grace_usec = std::uint64_t{options_.orphan_grace} * 1'000'000u;
    auto mirror = Mirror::open(config, std::move(passed.netlink));
    if (!mirror) {
        spdlog::error("Failed to subscribe to nsid events: {}", reason_text(mirror.error()));
        return fail(mirror.error());
    }
    mirror_ = std::move(*mirror);
    const auto& es = mirror_->event_socket();
    if (!es.rcvbuf_forced())
        spdlog::warn("Could not force the event socket's receive buffer (no CAP_NET_ADMIN): "
                     "{} bytes, capped by net.core.rmem_max; overruns will trigger resyncs",
                     es.rcvbuf());
    if (!es.listen_all())
        spdlog::info("NETLINK_LISTEN_ALL_NSID unavailable (no CAP_NET_BROADCAST): "
                     "only this namespace's table is visible");
    ns_get_id_ = kernel_has_ns_get_id();
    dump_truncation_ = kernel_truncates_dumps();

    // Ids saved by an earlier nsidd in this boot spare the kernel a GET per namespace.
    if (options_.id_cache != "none" && mirror_->load_ids(options_.id_cache))
        spdlog::debug("Loaded the namespace ids saved in {}", options_.id_cache);
    // Bootstrap: the event socket already queues changes; resync reads the table and then
    // applies what queued meanwhile.
    resync(ResyncReason::Startup);
    if (mirror_->stats().resyncs[static_cast<std::size_t>(ResyncReason::Startup)] == 0)
        return fail(Errc::Timeout);

    sd_event_source* s = nullptr;
    if (int r = sd_event_add_io(e, &s, mirror_->event_fd(), EPOLLIN, on_netlink_io, this); r < 0)
        return fail_errno(-r);
    sources_.emplace_back(s);

    UniqueFd listener;
    passed_socket_ = passed.varlink.has_value();
    if (passed.varlink) {
        listener = std::move(*passed.varlink);
        // Passed sockets may be blocking; accept4() runs until EAGAIN.
        const int flags = ::fcntl(listener.get(), F_GETFL);
        if (flags < 0 || ::fcntl(listener.get(), F_SETFL, flags | O_NONBLOCK) < 0)
            return fail_errno();
    } else {
        auto fd = listen_unix(options_.socket);
        if (!fd) {
            spdlog::error("Failed to listen on {}: {}", options_.socket, reason_text(fd.error()));
            return fail(fd.error());
        }
        listener = std::move(*fd);
    }
    Server::Limits limits;
    limits.max_connections = options_.max_connections;
    limits.max_per_uid = options_.max_connections_per_uid;
    limits.connection.max_message = options_.max_request;
    limits.connection.max_output = options_.max_output;
    limits.idle_usec = std::uint64_t{options_.idle_timeout} * 1'000'000u;
    server_ = std::make_unique<Server>(
        e, std::move(listener), limits,
        [this](Server::Peer& p, const varlink::Call& c) { dispatch(p, c); });
    if (auto r = server_->start(); !r)
        return fail(r.error());

    arm_resync_timer();
    if (auto r = start_discovery(); !r)
        return fail(r.error());
    sd_event_set_watchdog(e, true);
    const auto& table = *mirror_->registry().table(registry::kSelf);
    log_notable(
        Notable::Started, spdlog::level::info,
        fmt::format("Mirroring {} nsid entries (bootstrap read {} probes, dump {}); "
                    "serving {}",
                    table.rows.size(), mirror_->stats().last_probes,
                    mirror_->stats().last_dump_truncated ? "truncated" : "complete",
                    passed_socket_ ? "the socket passed by the service manager" : options_.socket));
    sd_notify(0, "READY=1");
    notify_status();
    return {};
}

int Daemon::run() {
    if (auto r = start(); !r)
        return 1;
    const int r = sd_event_loop(event_.get());
    sd_notify(0, "STOPPING=1");
    save_ids();
    server_.reset();
    if (r < 0) {
        spdlog::error("Failed to run the event loop: {}", std::strerror(-r));
        return 1;
    }
    log_notable(Notable::Stopped, spdlog::level::info, "Stopped");
    return r;
}

void Daemon::notify_status() {
    // Rate-limited: a storm of batches must not become a storm of notifications.
    const auto now = monotonic_usec();
    if (now - last_status_usec_ < kStatusIntervalUsec)
        return;
    last_status_usec_ = now;
    const auto& reg = mirror_->registry();
    sd_notifyf(0, "STATUS=Mirroring %zu entries in %zu tables; %llu overruns, %llu resyncs",
               reg.entry_count(), reg.tables().size(),
               static_cast<unsigned long long>(mirror_->stats().overruns),
               static_cast<unsigned long long>(resync_total()));
}

int Daemon::on_netlink_io(sd_event_source*, int, uint32_t, void* userdata) noexcept {
    static_cast<Daemon*>(userdata)->on_netlink();
    return 0;
}

void Daemon::on_netlink() {
    if (resync_timer_pending_) {
        // An overrun resync is due: the snapshot it takes supersedes whatever is read now.
        mirror_->discard();
        return;
    }
    auto drained = mirror_->drain();
    const bool lost = drained.lost;
    if (drained.events > 0 && !lost)
        metrics_.observe_batch(drained.events);
    const auto work = drained.changes.size();
    publish(std::move(drained.changes));
    release_memory(work);
    if (mirror_->refresh_due())
        schedule_discovery();
    if (lost) {
        log_notable(Notable::Overrun, spdlog::level::warn,
                    fmt::format("Lost nsid events (receive buffer overrun or malformed message, "
                                "{} overruns so far); resyncing",
                                mirror_->stats().overruns));
        overrun_resync();
    }
    notify_status();
    metrics_.sync(*mirror_, server_.get(), denials_);
}

void Daemon::report_orphans() {
    // Each orphan once (by id and first-seen time: ids are reused), the first few by name.
    std::set<std::pair<registry::Nsid, std::uint64_t>> now;
    std::size_t told = 0, more = 0;
    for (const auto& [nsid, row] : mirror_->registry().table(registry::kSelf)->rows) {
        if (mirror_->state(registry::kSelf, row.entry) != PeerState::Orphaned)
            continue;
        const auto key = std::make_pair(nsid, row.entry.since_usec);
        now.insert(key);
        if (orphans_.count(key))
            continue;
        if (told == kOrphansToLog) {
            ++more;
            continue;
        }
        ++told;
        const auto& p = row.entry.peer;
        const std::string names =
            p.names.empty() ? "" : fmt::format("was {}, ", fmt::join(p.names, ","));
        log_notable(Notable::Orphaned, spdlog::level::warn,
                    fmt::format("Peer namespace nsid {} ({}cookie {}, inode {}) has had no "
                                "process and no bind mount for {} s or more: an open fd, a "
                                "socket or the kernel keeps it alive",
                                nsid, names, p.cookie ? std::to_string(*p.cookie) : "unknown",
                                p.inode ? std::to_string(*p.inode) : "unknown",
                                options_.orphan_grace));
    }
    if (more > 0)
        log_notable(
            Notable::Orphaned, spdlog::level::warn,
            fmt::format("{} more peer namespaces orphaned (nsidctl list shows them)", more));
    orphans_ = std::move(now);
}

void Daemon::save_ids() {
    if (options_.id_cache == "none")
        return;
    // Its directory is the service's RuntimeDirectory; run by hand, nsidd makes it.
    if (const auto slash = options_.id_cache.rfind('/'); slash != std::string::npos && slash > 0)
        ::mkdir(options_.id_cache.substr(0, slash).c_str(), 0755);
    auto saved = mirror_->save_ids(options_.id_cache);
    if (saved)
        return;
    // Once per run: a missing directory stays missing.
    if (!id_cache_warned_)
        spdlog::warn("Cannot save namespace ids to {} ({}); restarts will ask the kernel again",
                     options_.id_cache, reason_text(saved.error()));
    id_cache_warned_ = true;
}

void Daemon::overrun_resync() {
    // Overruns come in storms, and reading a large table costs: resync at once, or, if the
    // last one ended recently, once it has been idle ten times as long as it took. The mirror
    // is exact again shortly after the storm, without resyncing through all of it.
    const auto& st = mirror_->stats();
    const auto now = monotonic_usec();
    const auto earliest =
        last_resync_end_usec_ +
        std::min<std::uint64_t>(st.last_resync_duration_usec * 10, kMaxResyncBackoffUsec);
    if (last_resync_end_usec_ == 0 || now >= earliest) {
        resync(ResyncReason::Overrun);
        return;
    }
    defer_resync(earliest - now);
}

void Daemon::defer_resync(std::uint64_t delay_usec) {
    // Until it runs, events read are dropped: the snapshot it takes supersedes them.
    resync_timer_pending_ = true;
    sd_event_source* s = nullptr;
    if (!overrun_timer_) {
        if (sd_event_add_time_relative(event_.get(), &s, CLOCK_MONOTONIC, delay_usec, 1000,
                                       on_overrun_timer, this) < 0) {
            resync_timer_pending_ = false;
            return; // the next overrun or the periodic resync tries again
        }
        overrun_timer_.reset(s);
    } else {
        sd_event_source_set_time_relative(overrun_timer_.get(), delay_usec);
        sd_event_source_set_enabled(overrun_timer_.get(), SD_EVENT_ONESHOT);
    }
}

int Daemon::on_overrun_timer(sd_event_source*, uint64_t, void* userdata) noexcept {
    auto* self = static_cast<Daemon*>(userdata);
    self->mirror_->discard();
    self->resync(ResyncReason::Overrun);
    self->notify_status();
    return 0;
}

void Daemon::resync(ResyncReason reason) {
    // Whatever the reason, this snapshot supersedes a deferred overrun resync.
    resync_timer_pending_ = false;
    if (overrun_timer_)
        sd_event_source_set_enabled(overrun_timer_.get(), SD_EVENT_OFF);
    auto changes = mirror_->resync(reason);
    last_resync_end_usec_ = monotonic_usec();
    if (!changes) {
        // Events kept overflowing while the table was read (a storm still going), or the
        // kernel did not answer: the mirror is not exact, so try again until it is.
        spdlog::warn("Failed to resync the nsid table ({}): {}; trying again", to_string(reason),
                     reason_text(changes.error()));
        metrics_.sync(*mirror_, server_.get(), denials_);
        if (event_ && reason != ResyncReason::Startup)
            defer_resync(kRetryResyncUsec);
        return;
    }
    const auto& st = mirror_->stats();
    metrics_.observe_resync(st.last_resync_duration_usec);
    metrics_.sync(*mirror_, server_.get(), denials_);
    if (reason != ResyncReason::Startup)
        log_notable(Notable::Resync, changes->empty() ? spdlog::level::debug : spdlog::level::info,
                    fmt::format("Resynced ({}) in {} us with {} probes: {} changes",
                                to_string(reason), st.last_resync_duration_usec, st.last_probes,
                                changes->size()));
    publish(std::move(*changes));
    // A large read's temporaries (probe lists, scan results) would otherwise stay resident.
    release_memory(st.last_probes);
}

void Daemon::release_memory(std::size_t items) {
    // Counted across calls: a storm of small batches frees as much as one large one.
    trim_debt_ += items;
    if (trim_debt_ >= kTrimThreshold) {
        ::malloc_trim(0);
        trim_debt_ = 0;
    }
}

void Daemon::publish(std::vector<registry::Change> changes) {
    if (changes.empty())
        return;
    std::size_t deaths = 0;
    for (const auto& c : changes) {
        const std::uint64_t seq = ++seq_;
        if (server_)
            server_->publish(
                [&] {
                    return varlink::encode_reply(
                        to_json(seq,
                                registry::Change{c.kind, c.observer,
                                                 mirror_->view(c.observer, c.entry), c.removed},
                                to_string(mirror_->state(c.observer, c.entry))),
                        true);
                },
                kWatcherTooSlow);
        deaths += c.kind == registry::ChangeKind::Del && c.observer == registry::kSelf;
    }
    if (deaths >= kBurstToLog)
        log_notable(
            Notable::DeathBurst, spdlog::level::info,
            fmt::format("{} peer namespaces died in one burst, purged in one sweep", deaths));
}

Result<void> Daemon::start_discovery() {
    // The mount table signals every change with EPOLLPRI on an open mountinfo; `ip netns add`
    // and `del` are mount changes. They come in bursts: one rescan per burst, a little later.
    mountinfo_.reset(::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC));
    sd_event_source* s = nullptr;
    if (mountinfo_) {
        if (int r = sd_event_add_io(event_.get(), &s, mountinfo_.get(), EPOLLPRI, on_mounts, this);
            r < 0)
            return fail_errno(-r);
        sources_.emplace_back(s);
    } else {
        spdlog::warn("Cannot watch /proc/self/mountinfo ({}): named namespaces are found by "
                     "the periodic pass only",
                     std::strerror(errno));
    }
    if (int r = sd_event_add_time_relative(event_.get(), &s, CLOCK_MONOTONIC, kMountDelayUsec,
                                           kMountDelayUsec / 2, on_mounts_timer, this);
        r < 0)
        return fail_errno(-r);
    mounts_timer_.reset(s);
    // Armed by mount changes and unexplained ids; first, right after start, for the mounts
    // that exist already.
    mounts_changed_ = true;
    // The first pass starts at once, after READY=1: identities follow the ids shortly.
    if (int r = sd_event_add_time_relative(event_.get(), &s, CLOCK_MONOTONIC, 0, 0,
                                           on_discovery_timer, this);
        r < 0)
        return fail_errno(-r);
    discovery_timer_.reset(s);
    return {};
}

int Daemon::on_mounts(sd_event_source*, int, uint32_t, void* userdata) noexcept {
    auto* self = static_cast<Daemon*>(userdata);
    self->mounts_changed_ = true;
    self->schedule_discovery();
    return 0;
}

void Daemon::schedule_discovery() {
    // Armed once per burst: a pending rescan already covers this change.
    int enabled = SD_EVENT_OFF;
    sd_event_source_get_enabled(mounts_timer_.get(), &enabled);
    if (enabled == SD_EVENT_OFF) {
        sd_event_source_set_time_relative(mounts_timer_.get(), mount_delay_usec_);
        sd_event_source_set_enabled(mounts_timer_.get(), SD_EVENT_ONESHOT);
    }
}

int Daemon::on_mounts_timer(sd_event_source*, uint64_t, void* userdata) noexcept {
    auto* self = static_cast<Daemon*>(userdata);
    if (std::exchange(self->mounts_changed_, false)) {
        const auto started = monotonic_usec();
        self->mirror_->discover_mounts();
        // Rereading the mount table costs O(mounts) in the kernel and here: during a long
        // burst of `ip netns add`, reread at most ~2% of the time, so that a host with 10000
        // bind mounts is not kept busy by its own mount table.
        const auto took = monotonic_usec() - started;
        spdlog::debug("Mount table reread in {} us", took);
        self->mount_delay_usec_ = std::clamp<std::uint64_t>(took * 50, kMountDelayUsec, 2'000'000);
    }
    if (self->mirror_->refresh_due()) {
        // One slice of the round, then the loop serves events and clients again.
        self->mirror_->refresh_ids(monotonic_usec() + kRefreshSliceUsec);
        if (self->mirror_->refresh_due()) {
            sd_event_source_set_time_relative(self->mounts_timer_.get(), kRefreshSliceUsec);
            sd_event_source_set_enabled(self->mounts_timer_.get(), SD_EVENT_ONESHOT);
        }
    }
    self->metrics_.sync(*self->mirror_, self->server_.get(), self->denials_);
    return 0;
}

int Daemon::on_discovery_timer(sd_event_source* s, uint64_t, void* userdata) noexcept {
    auto* self = static_cast<Daemon*>(userdata);
    // A bounded slice of the /proc walk per wakeup: a host with 100k processes does not stall
    // the loop; the rest follows at once, after whatever else is pending.
    const auto started = monotonic_usec();
    // The mount table is reread on its own changes; only without that watch does a pass
    // reread it too.
    const bool done =
        self->mirror_->discover_processes(kProcessesPerSlice, !self->mountinfo_.is_valid());
    const auto walked = monotonic_usec();
    const auto delay = done ? static_cast<std::uint64_t>(self->options_.discovery_interval * 1e6)
                            : std::uint64_t{0};
    sd_event_source_set_time_relative(s, delay);
    sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
    if (done) {
        self->report_orphans();
        self->save_ids();
        self->metrics_.set_namespaces(self->mirror_->catalog().namespaces().size(),
                                      read_netns_limit());
        self->metrics_.sync(*self->mirror_, self->server_.get(), self->denials_);
        self->release_memory(self->mirror_->catalog().namespaces().size());
        spdlog::debug("Discovery pass ended: {} namespaces; last slice {} us, saving and "
                      "metrics {} us",
                      self->mirror_->catalog().namespaces().size(), walked - started,
                      monotonic_usec() - walked);
    }
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
    self->resync(ResyncReason::Periodic);
    self->arm_resync_timer();
    self->notify_status();
    return 0;
}

int Daemon::on_signal(sd_event_source* s, const signalfd_siginfo* si, void* userdata) noexcept {
    auto* self = static_cast<Daemon*>(userdata);
    if (si->ssi_signo == SIGHUP) {
        if (auto err = self->reload())
            spdlog::error("Failed to reload the configuration: {}", *err);
        return 0;
    }
    sd_event_exit(sd_event_source_get_event(s), 0);
    return 0;
}

std::optional<std::string> Daemon::reload() {
    sd_notify(0, "RELOADING=1");
    auto parsed = reload_options(argc_, argv_);
    if (auto* err = std::get_if<std::string>(&parsed)) {
        sd_notify(0, "READY=1");
        return *err;
    }
    auto& fresh = std::get<Options>(parsed);
    // Applied live: log level and resync interval. The rest needs a restart.
    spdlog::set_level(
        spdlog::level::from_str(fresh.log_level == "warning" ? "warn" : fresh.log_level));
    options_.log_level = fresh.log_level;
    if (fresh.resync_interval != options_.resync_interval) {
        options_.resync_interval = fresh.resync_interval;
        arm_resync_timer();
    }
    spdlog::info("Reloaded the configuration");
    sd_notify(0, "READY=1");
    return std::nullopt;
}

std::uint64_t Daemon::resync_total() const {
    std::uint64_t n = 0;
    for (auto r : mirror_->stats().resyncs)
        n += r;
    return n;
}

Json Daemon::status() const {
    const auto& reg = mirror_->registry();
    const auto& st = mirror_->stats();
    const std::uint64_t resyncs = resync_total();
    return {{"version", kVersion},
            {"uptime_usec", monotonic_usec() - started_usec_},
            {"scope", options_.scope == Scope::Host ? "host" : "self"},
            {"tables", reg.tables().size()},
            {"entries", reg.entry_count()},
            {"events", reg.counters().events},
            {"batches", reg.counters().batches},
            {"overruns", st.overruns},
            {"resyncs", resyncs},
            {"last_resync_usec", st.last_resync_usec},
            {"kernel",
             {{"dump_truncation", dump_truncation_},
              {"listen_all_nsid", mirror_->event_socket().listen_all()},
              {"ns_get_id", ns_get_id_}}}};
}

void Daemon::dispatch(Server::Peer& peer, const varlink::Call& c) {
    call(peer, c);
    metrics_.count_request(c.method, !peer.failed());
    metrics_.sync(*mirror_, server_.get(), denials_);
}

void Daemon::call(Server::Peer& peer, const varlink::Call& call) {
    const std::string& m = call.method;
    const auto& params = call.parameters;
    auto no_params = [&]() {
        if (!params.empty()) {
            peer.error(varlink::kInvalidParameter, {{"parameter", params.begin().key()}});
            return false;
        }
        return true;
    };
    auto privileged = [&]() {
        if (peer.uid() != 0) {
            peer.error(kPermissionDenied);
            // Rate-limited (powers of two): a client looping on denials cannot flood the log.
            ++denials_;
            if ((denials_ & (denials_ - 1)) == 0)
                log_notable(Notable::PermissionDenied, spdlog::level::warn,
                            fmt::format("Denied {} to uid {} ({} denials so far)", m, peer.uid(),
                                        denials_));
            return false;
        }
        return true;
    };
    if (m == "org.varlink.service.GetInfo") {
        if (no_params())
            peer.reply(
                {{"vendor", "nsidd"},
                 {"product", "nsidd"},
                 {"version", kVersion},
                 {"url", "https://github.com/nsidd/nsidd"},
                 {"interfaces", Json::array({"org.varlink.service", std::string(kInterface)})}});
    } else if (m == "org.varlink.service.GetInterfaceDescription") {
        auto it = params.find("interface");
        if (it == params.end() || !it->is_string() || params.size() != 1) {
            peer.error(varlink::kInvalidParameter, {{"parameter", "interface"}});
        } else if (*it == kInterface) {
            peer.reply({{"description", std::string(kInterfaceDescription)}});
        } else if (*it == "org.varlink.service") {
            peer.reply({{"description", "interface org.varlink.service\n"
                                        "method GetInfo() -> (vendor: string, product: string, "
                                        "version: string, url: string, interfaces: []string)\n"
                                        "method GetInterfaceDescription(interface: string) -> "
                                        "(description: string)\n"
                                        "error InterfaceNotFound (interface: string)\n"
                                        "error MethodNotFound (method: string)\n"
                                        "error MethodNotImplemented (method: string)\n"
                                        "error InvalidParameter (parameter: string)\n"
                                        "error PermissionDenied ()\n"
                                        "error ExpectedMore ()\n"}});
        } else {
            peer.error(varlink::kInterfaceNotFound, {{"interface", *it}});
        }
    } else if (m.rfind("io.nsidd.Registry.", 0) != 0 && m.rfind("org.varlink.service.", 0) != 0) {
        peer.error(varlink::kInterfaceNotFound, {{"interface", m.substr(0, m.rfind('.'))}});
    } else if (m == "io.nsidd.Registry.GetStatus") {
        if (no_params())
            peer.reply(status());
    } else if (m == "io.nsidd.Registry.List") {
        registry::Observer observer = registry::kSelf;
        for (auto& [key, value] : params.items()) {
            if (key != "observer" ||
                !(value.is_string() || value.is_null() || value.is_number_integer())) {
                peer.error(varlink::kInvalidParameter, {{"parameter", key}});
                return;
            }
        }
        const auto it = params.find("observer");
        std::string name = it == params.end() || it->is_null() ? "self"
                           : it->is_string()                   ? it->get<std::string>()
                                                               : it->dump();
        if (name != "self") {
            char* end = nullptr;
            const long v = std::strtol(name.c_str(), &end, 10);
            if (!name.empty() && *end == '\0' && v >= 0 && v <= INT32_MAX)
                observer = static_cast<registry::Observer>(v);
            else
                observer = mirror_->nsid_of_name(name).value_or(-2);
        }
        const auto* table = observer >= -1 ? mirror_->registry().table(observer) : nullptr;
        if (table == nullptr) {
            peer.error(kNoSuchObserver, {{"observer", name}});
            return;
        }
        Json entries = Json::array();
        for (const auto& [nsid, row] : table->rows)
            entries.push_back(to_json(mirror_->view(observer, row.entry),
                                      to_string(mirror_->state(observer, row.entry))));
        peer.reply({{"entries", std::move(entries)}});
        release_memory(table->rows.size());
    } else if (m == "io.nsidd.Registry.Graph") {
        if (!no_params())
            return;
        Json tables = Json::array();
        for (const auto& [observer, table] : mirror_->registry().tables()) {
            Json entries = Json::array();
            for (const auto& [nsid, row] : table.rows)
                entries.push_back(to_json(mirror_->view(observer, row.entry),
                                          to_string(mirror_->state(observer, row.entry))));
            tables.push_back(
                {{"observer", observer_name(observer)}, {"entries", std::move(entries)}});
        }
        peer.reply({{"tables", std::move(tables)}});
        release_memory(mirror_->registry().entry_count());
    } else if (m == "io.nsidd.Registry.History") {
        std::size_t limit = SIZE_MAX;
        for (auto& [key, value] : params.items()) {
            if (key != "limit" || !(value.is_null() || (value.is_number_integer() &&
                                                        value.get<std::int64_t>() >= 0))) {
                peer.error(varlink::kInvalidParameter, {{"parameter", key}});
                return;
            }
            if (!value.is_null())
                limit = value.get<std::size_t>();
        }
        const auto& history = mirror_->registry().history();
        Json deaths = Json::array();
        const std::size_t skip = history.size() > limit ? history.size() - limit : 0;
        for (std::size_t i = skip; i < history.size(); ++i)
            deaths.push_back(to_json(history[i]));
        peer.reply({{"deaths", std::move(deaths)}});
    } else if (m == "io.nsidd.Registry.Watch") {
        if (!no_params())
            return;
        if (!call.more) {
            peer.error(varlink::kExpectedMore);
            return;
        }
        peer.reply({{"seq", seq_},
                    {"kind", "resync"},
                    {"observer", "self"},
                    {"entry", nullptr},
                    {"removed", false}},
                   true);
        peer.subscribe();
    } else if (m == "io.nsidd.Registry.Resync") {
        if (!no_params() || !privileged())
            return;
        resync(ResyncReason::Manual);
        peer.reply(Json::object());
    } else if (m == "io.nsidd.Registry.Reload") {
        if (!no_params() || !privileged())
            return;
        if (auto err = reload())
            peer.error(kInvalidConfiguration, {{"message", *err}});
        else
            peer.reply(Json::object());
    } else if (m == "io.nsidd.Registry.GetMetrics") {
        if (no_params()) {
            metrics_.sync(*mirror_, server_.get(), denials_);
            peer.reply({{"text", metrics_.text()}});
        }
    } else {
        peer.error(varlink::kMethodNotFound, {{"method", m}});
    }
}

} // namespace nsidd::daemon
