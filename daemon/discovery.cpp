// SPDX-License-Identifier: LGPL-2.1-or-later
// The daemon's discovery timers: mount changes, the /proc pass in slices, publishing and
// settling what changed, orphan reports and the id cache. What discovery finds and what it means is
// the engine's (lib/mirror).
#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "daemon/daemon.hpp"
#include "daemon/journal.hpp"
#include "util/time.hpp"

namespace nsidd::daemon {

Result<void> Daemon::start_discovery() {
    // The mount table signals every change with EPOLLPRI on an open mountinfo; `ip netns add`
    // and `del` are mount changes. They come in bursts: one rescan per burst, a little later.
    mountinfo_.reset(::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC));
    sd_event_source* s = nullptr;
    if (!mountinfo_) {
        spdlog::warn("Cannot watch /proc/self/mountinfo ({}): named namespaces are found by "
                     "the periodic pass only",
                     std::strerror(errno));
    } else if (int r =
                   sd_event_add_io(event_.get(), &s, mountinfo_.get(), EPOLLPRI, on_mounts, this);
               r < 0) {
        spdlog::error("Failed to watch the mount table: {}", std::strerror(-r));
        return fail_errno(-r);
    } else {
        mounts_watch_.reset(s);
    }
    // Armed by mount changes and unexplained ids; first, right after start, for the mounts
    // that exist already.
    mounts_changed_ = true;
    int r = sd_event_add_time_relative(event_.get(), &s, CLOCK_MONOTONIC, kMountDelayUsec,
                                       kMountDelayUsec / 2, on_mounts_timer, this);
    if (r >= 0) {
        mounts_timer_.reset(s);
        r = sd_event_add_time_relative(event_.get(), &s, CLOCK_MONOTONIC, 0, kRefreshSliceUsec,
                                       on_refresh_timer, this);
    }
    if (r >= 0) {
        refresh_timer_.reset(s);
        sd_event_source_set_enabled(s, SD_EVENT_OFF);
        // The first pass starts at once, after READY=1: identities follow the ids shortly.
        r = sd_event_add_time_relative(event_.get(), &s, CLOCK_MONOTONIC, 0, 0, on_discovery_timer,
                                       this);
        // Its slices are background work: events and clients pending at the same time go
        // first (the client whose connection started nsidd is answered before the first pass).
        if (r >= 0)
            r = sd_event_source_set_priority(s, SD_EVENT_PRIORITY_NORMAL + 1);
    }
    if (r < 0) {
        spdlog::error("Failed to add the discovery timers: {}", std::strerror(-r));
        return fail_errno(-r);
    }
    discovery_timer_.reset(s);
    return {};
}

int Daemon::on_mounts(sd_event_source* s, int, uint32_t, void* userdata) noexcept {
    auto* self = static_cast<Daemon*>(userdata);
    self->mounts_changed_ = true;
    self->schedule_discovery();
    // The rescan covers every change until it runs: no wakeup per `ip netns add` meanwhile.
    // Watched again just before it (a change while off is reported at once when back on).
    sd_event_source_set_enabled(s, SD_EVENT_OFF);
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
    static_cast<Daemon*>(userdata)->on_mounts_due();
    return 0;
}

void Daemon::on_mounts_due() {
    if (mounts_watch_)
        sd_event_source_set_enabled(mounts_watch_.get(), SD_EVENT_ON);
    if (std::exchange(mounts_changed_, false)) {
        const auto started = monotonic_usec();
        engine_->discover_mounts();
        // Rereading the mount table costs O(mounts) in the kernel and here: during a long
        // burst of `ip netns add`, reread at most ~2% of the time, so that a host with 10000
        // bind mounts is not kept busy by its own mount table.
        const auto took = monotonic_usec() - started;
        spdlog::debug("Mount table reread in {} us", took);
        mount_delay_usec_ = std::clamp<std::uint64_t>(took * 50, kMountDelayUsec, 2'000'000);
    }
    refresh_slice();
}

void Daemon::refresh_slice() {
    if (engine_->refresh_due()) {
        // One slice of the round, until it is over or events wait: they are served first
        // (latency). An unfinished round goes on shortly; a new one starts with the next mount
        // rescan, which explains most new ids (a storm of new namespaces) without a question.
        const auto deadline = monotonic_usec() + kRefreshSliceUsec;
        const bool ended = engine_->refresh_ids(
            [this, deadline] { return monotonic_usec() >= deadline || events_waiting(); });
        if (engine_->refresh_due()) {
            if (ended) {
                schedule_discovery();
            } else {
                sd_event_source_set_time_relative(refresh_timer_.get(), kRefreshSliceUsec);
                sd_event_source_set_enabled(refresh_timer_.get(), SD_EVENT_ONESHOT);
            }
        }
    }
    resync_if_replaced();
}

int Daemon::on_refresh_timer(sd_event_source*, uint64_t, void* userdata) noexcept {
    static_cast<Daemon*>(userdata)->refresh_slice();
    return 0;
}

bool Daemon::events_waiting() const {
    pollfd p{kernel_->event_fd(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
}

void Daemon::resync_if_replaced() {
    // Discovery met a row's peer replaced under its id: the events saying so were lost, or are
    // still queued; the resync tells which.
    if (engine_->resync_due())
        (void)events_->resync(mirror::ResyncReason::Replaced);
}

int Daemon::on_discovery_timer(sd_event_source* s, uint64_t, void* userdata) noexcept {
    static_cast<Daemon*>(userdata)->on_discovery_slice(s);
    return 0;
}

void Daemon::on_discovery_slice(sd_event_source* s) {
    // A bounded slice of the /proc walk per wakeup: a host with 100k processes does not stall
    // the loop; the rest follows at once, after whatever else is pending. A pass that leaves
    // peers without a process or a mount starts a search of every process's fds for them, in a
    // process of its own (fd_search.hpp): its findings come back to the loop when it ends.
    const auto started = monotonic_usec();
    const auto interval = static_cast<std::uint64_t>(options_.discovery_interval * 1e6);
    // Each pass rereads the mount table as it begins (by listmount, nearly free when nothing
    // changed): a verdict needs a look at the mounts no older than the pass.
    const bool done = engine_->discover_processes(kProcessesPerSlice, true);
    const auto walked = monotonic_usec();
    sd_event_source_set_time_relative(s, done ? interval : 0);
    sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
    resync_if_replaced();
    if (!done)
        return;
    start_fd_search();
    report_leaks();
    save_ids();
    const auto namespaces = engine_->catalog().namespaces().size();
    metrics_.set_namespaces(namespaces, read_netns_limit());
    release_memory(namespaces);
    spdlog::debug("Discovery pass ended: {} namespaces; last slice {} us, saving and metrics {} us",
                  namespaces, walked - started, monotonic_usec() - walked);
}

void Daemon::start_fd_search() {
    if (!engine_->fds_due() || (fd_search_ && fd_search_->busy()))
        return;
    if (!fd_search_)
        fd_search_ = std::make_unique<FdSearchRunner>(
            event_.get(), "/proc",
            [this](netns::FdFound found) { on_fd_search_done(std::move(found)); },
            [this](const char* why) {
                engine_->fd_search_abandoned();
                // Once per run at warning level: a host where searches overrun does so each time.
                spdlog::log(std::exchange(fd_search_warned_, true) ? spdlog::level::debug
                                                                   : spdlog::level::warn,
                            "Fd search given up: {}; the next one starts afresh", why);
            });
    if (auto r = fd_search_->start(engine_->start_fd_search()); !r) {
        engine_->fd_search_abandoned();
        if (!std::exchange(fd_search_warned_, true))
            spdlog::warn("Cannot start an fd search ({}; {} earlier search processes have not "
                         "ended): fd holders are not searched for now",
                         r.error().message(), fd_search_->ending());
    }
}

void Daemon::on_fd_search_done(netns::FdFound found) {
    const auto& cost = fd_search_->last_cost();
    spdlog::debug("Fd search ended in {} ms ({} ms of CPU in its process): {} entries, {} "
                  "namespaces identified",
                  cost.wall_usec / 1000, cost.cpu_usec / 1000, found.looked_at,
                  found.identified.size());
    for (const auto& s : found.swapped)
        spdlog::warn("Process {} (uid {}) put another file under fd {} while nsidd copied it as a "
                     "socket: nothing of uid {} is copied again; the copy is never closed",
                     s.pid, s.uid, s.fd, s.uid);
    engine_->fd_search_done(std::move(found));
    if (engine_->fd_copies_denied() > 0 && !copies_denied_warned_) {
        copies_denied_warned_ = true;
        spdlog::warn("Cannot copy other processes' fds (pidfd_getfd refused: a container's "
                     "syscall filter, or no CAP_SYS_PTRACE): sockets held outside their "
                     "namespace are not found; such peers read as pinned");
    }
    report_leaks();
}

namespace {

// The journal fields a log pipeline routes a leak on.
std::vector<std::string> leak_fields(registry::Nsid nsid, const registry::Identity& p,
                                     const char* state) {
    std::vector<std::string> f{"NSID=" + std::to_string(nsid), std::string("STATE=") + state};
    if (p.cookie)
        f.push_back("COOKIE=" + std::to_string(*p.cookie));
    if (!p.holders.fds->empty()) {
        f.push_back("HOLDER_PID=" + std::to_string(p.holders.fds->front().pid));
        f.push_back("HOLDER_COMM=" + p.holders.fds->front().comm);
    }
    for (const auto& m : p.holders.mounts)
        f.push_back(fmt::format("MOUNT_PATH={}", m));
    for (const auto& m : p.holders.other_mounts)
        f.push_back(fmt::format("MOUNT_PATH={}", m));
    if (p.owner) {
        if (!p.owner->unit.empty())
            f.push_back("UNIT=" + p.owner->unit);
        if (!p.owner->runtime.empty())
            f.push_back("RUNTIME=" + p.owner->runtime);
        if (!p.owner->container.empty())
            f.push_back("CONTAINER=" + p.owner->container);
        if (!p.owner->sandbox.empty())
            f.push_back("SANDBOX=" + p.owner->sandbox);
        if (!p.owner->pod_uid.empty())
            f.push_back("POD_UID=" + p.owner->pod_uid);
    }
    return f;
}

std::string leak_text(registry::Nsid nsid, const registry::Identity& p, mirror::PeerState s,
                      double grace) {
    const auto& had = p.names.empty() ? p.former_names : p.names;
    const std::string id =
        fmt::format("Peer namespace nsid {} ({}cookie {}, inode {})", nsid,
                    had.empty() ? "" : fmt::format("was {}, ", fmt::join(had, ",")),
                    p.cookie ? std::to_string(*p.cookie) : "unknown",
                    p.inode ? std::to_string(*p.inode) : "unknown");
    switch (s) {
    case mirror::PeerState::StaleMount:
        return fmt::format("{} is held only by the bind mount {} for {} s or more (a stale "
                           "{} mount{}: nsidctl leaks says what frees it)",
                           id, fmt::join(p.holders.mounts, ","), grace,
                           p.owner && !p.owner->runtime.empty() ? p.owner->runtime : "runtime",
                           p.owner && !p.owner->container.empty()
                               ? " of container " + p.owner->container
                               : std::string());
    case mirror::PeerState::FdHeld:
        return fmt::format(
            "{} is held only by {} of pid {} ({}), fd {}: that process keeps "
            "it alive",
            id, p.holders.fds->front().socket ? "a socket created inside it" : "an fd",
            p.holders.fds->front().pid, p.holders.fds->front().comm, p.holders.fds->front().fd);
    default:
        return fmt::format("{} has had no process, no bind mount and no fd holding it for {} s "
                           "or more: the kernel (a socket, a device) keeps it alive",
                           id, grace);
    }
}

} // namespace

void Daemon::send_changes() {
    auto& feed = engine_->feed();
    if (!feed.pending())
        return;
    std::size_t deaths = 0;
    daemon::send_changes(feed, server_.get(), [&](const mirror::Feed::Item& item) {
        deaths += item.change.kind == registry::ChangeKind::Del &&
                  item.change.observer == registry::kSelf;
    });
    // Told once the burst is over (on_quiet_timer): one line for a storm, not one per read.
    // A burst is deaths with no quiet moment between them: a few earlier ones, too few to be
    // told (so no line is pending for them), do not count toward it.
    if (deaths > 0) {
        const auto now = monotonic_usec();
        if (burst_deaths_ < kBurstToLog && now - last_death_usec_ >= kQuietUsec)
            burst_deaths_ = burst_sweeps_ = 0;
        last_death_usec_ = now;
        burst_deaths_ += deaths;
        ++burst_sweeps_;
        if (burst_deaths_ >= kBurstToLog)
            after_quiet();
    }
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

void Daemon::report_leaks() {
    settle(); // the states the pass just decided
    // Each leak once (by id, first-seen time and state: ids are reused), the first few in full.
    std::set<std::tuple<registry::Nsid, std::uint64_t, mirror::PeerState>> now;
    std::size_t told = 0, more = 0;
    for (const auto& [nsid, row] : engine_->registry().table(registry::kSelf)->rows) {
        const auto state = engine_->state(registry::kSelf, row.entry);
        if (!is_leak(state))
            continue;
        const auto key = std::make_tuple(nsid, row.entry.since_usec, state);
        now.insert(key);
        if (leaks_.count(key))
            continue;
        if (told == kOrphansToLog) {
            ++more;
            continue;
        }
        ++told;
        const auto& p = row.entry.peer;
        const auto fields = leak_fields(nsid, p, mirror::to_string(state));
        const auto notable = state == mirror::PeerState::StaleMount ? Notable::StaleMount
                             : state == mirror::PeerState::FdHeld   ? Notable::FdHeld
                                                                    : Notable::Pinned;
        log_notable(notable, spdlog::level::warn, leak_text(nsid, p, state, options_.orphan_grace),
                    fields);
    }
    if (more > 0)
        log_notable(
            Notable::Pinned, spdlog::level::warn,
            fmt::format("{} more peer namespaces leaking (nsidctl leaks shows them)", more));
    leaks_ = std::move(now);
}

void Daemon::save_ids(bool now) {
    if (options_.id_cache == "none" || !engine_)
        return;
    // Its directory is the service's RuntimeDirectory; run by hand, nsidd makes it.
    if (const auto slash = options_.id_cache.rfind('/'); slash != std::string::npos && slash > 0)
        ::mkdir(options_.id_cache.substr(0, slash).c_str(), 0755);
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
