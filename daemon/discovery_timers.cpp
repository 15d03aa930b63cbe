// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/discovery_timers.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>

#include <spdlog/spdlog.h>

#include "util/time.hpp"

namespace nsidd::daemon {

Result<void> DiscoveryTimers::start() {
    // The mount table signals every change with EPOLLPRI on an open mountinfo; `ip netns add`
    // and `del` are mount changes. They come in bursts: one rescan per burst, a little later.
    mountinfo_.reset(::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC));
    sd_event_source* s = nullptr;
    if (!mountinfo_) {
        spdlog::warn("Cannot watch /proc/self/mountinfo ({}): named namespaces are found by "
                     "the periodic pass only",
                     std::strerror(errno));
    } else if (int r = sd_event_add_io(event_, &s, mountinfo_.get(), EPOLLPRI, on_mounts, this);
               r < 0) {
        spdlog::error("Failed to watch the mount table: {}", std::strerror(-r));
        return fail_errno(-r);
    } else {
        mounts_watch_.reset(s);
    }
    // Armed by mount changes and unexplained ids; first, right after start, for the mounts
    // that exist already.
    mounts_changed_ = true;
    int r = sd_event_add_time_relative(event_, &s, CLOCK_MONOTONIC, kMountDelayUsec,
                                       kMountDelayUsec / 2, on_mounts_timer, this);
    if (r >= 0) {
        mounts_timer_.reset(s);
        r = sd_event_add_time_relative(event_, &s, CLOCK_MONOTONIC, 0, kRefreshSliceUsec,
                                       on_refresh_timer, this);
    }
    if (r >= 0) {
        refresh_timer_.reset(s);
        sd_event_source_set_enabled(s, SD_EVENT_OFF);
        // The first pass starts at once, after READY=1: identities follow the ids shortly.
        r = sd_event_add_time_relative(event_, &s, CLOCK_MONOTONIC, 0, 0, on_pass_timer, this);
        // Its slices are background work: events and clients pending at the same time go
        // first (the client whose connection started nsidd is answered before the first pass).
        if (r >= 0)
            r = sd_event_source_set_priority(s, SD_EVENT_PRIORITY_NORMAL + 1);
    }
    if (r < 0) {
        spdlog::error("Failed to add the discovery timers: {}", std::strerror(-r));
        return fail_errno(-r);
    }
    pass_timer_.reset(s);
    return {};
}

int DiscoveryTimers::on_mounts(sd_event_source* s, int, uint32_t, void* userdata) noexcept {
    auto* self = static_cast<DiscoveryTimers*>(userdata);
    self->mounts_changed_ = true;
    self->schedule();
    // The rescan covers every change until it runs: no wakeup per `ip netns add` meanwhile.
    // Watched again just before it (a change while off is reported at once when back on).
    sd_event_source_set_enabled(s, SD_EVENT_OFF);
    return 0;
}

void DiscoveryTimers::schedule() {
    // Armed once per burst: a pending rescan already covers this change.
    int enabled = SD_EVENT_OFF;
    sd_event_source_get_enabled(mounts_timer_.get(), &enabled);
    if (enabled == SD_EVENT_OFF) {
        sd_event_source_set_time_relative(mounts_timer_.get(), mount_delay_usec_);
        sd_event_source_set_enabled(mounts_timer_.get(), SD_EVENT_ONESHOT);
    }
}

int DiscoveryTimers::on_mounts_timer(sd_event_source*, uint64_t, void* userdata) noexcept {
    static_cast<DiscoveryTimers*>(userdata)->on_mounts_due();
    return 0;
}

void DiscoveryTimers::on_mounts_due() {
    if (mounts_watch_)
        sd_event_source_set_enabled(mounts_watch_.get(), SD_EVENT_ON);
    if (std::exchange(mounts_changed_, false)) {
        const auto started = monotonic_usec();
        engine_.discover_mounts();
        // Rereading the mount table costs O(mounts) in the kernel and here: during a long
        // burst of `ip netns add`, reread at most ~2% of the time, so that a host with 10000
        // bind mounts is not kept busy by its own mount table.
        const auto took = monotonic_usec() - started;
        spdlog::debug("Mount table reread in {} us", took);
        mount_delay_usec_ = std::clamp<std::uint64_t>(took * 50, kMountDelayUsec, 2'000'000);
    }
    refresh_slice();
}

void DiscoveryTimers::refresh_slice() {
    if (engine_.refresh_due()) {
        // One slice of the round, until it is over or events wait: they are served first
        // (latency). An unfinished round goes on shortly; a new one starts with the next mount
        // rescan, which explains most new ids (a storm of new namespaces) without a question.
        const auto deadline = monotonic_usec() + kRefreshSliceUsec;
        const bool ended = engine_.refresh_ids(
            [this, deadline] { return monotonic_usec() >= deadline || events_waiting(); });
        if (engine_.refresh_due()) {
            if (ended) {
                schedule();
            } else {
                sd_event_source_set_time_relative(refresh_timer_.get(), kRefreshSliceUsec);
                sd_event_source_set_enabled(refresh_timer_.get(), SD_EVENT_ONESHOT);
            }
        }
    }
    resync_if_replaced();
}

int DiscoveryTimers::on_refresh_timer(sd_event_source*, uint64_t, void* userdata) noexcept {
    static_cast<DiscoveryTimers*>(userdata)->refresh_slice();
    return 0;
}

bool DiscoveryTimers::events_waiting() const {
    pollfd p{kernel_.event_fd(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
}

void DiscoveryTimers::resync_if_replaced() {
    // Discovery met a row's peer replaced under its id: the events saying so were lost, or are
    // still queued; the resync tells which.
    if (engine_.resync_due())
        (void)events_.resync(mirror::ResyncReason::Replaced);
}

int DiscoveryTimers::on_pass_timer(sd_event_source* s, uint64_t, void* userdata) noexcept {
    static_cast<DiscoveryTimers*>(userdata)->pass_slice(s);
    return 0;
}

void DiscoveryTimers::pass_slice(sd_event_source* s) {
    // A bounded slice of the /proc walk per wakeup: a host with 100k processes does not stall
    // the loop; the rest follows at once, after whatever else is pending. A pass that leaves
    // peers without a process or a mount starts a search of every process's fds for them, in a
    // process of its own (fd_search.hpp): its findings come back to the loop when it ends.
    const auto started = monotonic_usec();
    // Each pass rereads the mount table as it begins (by listmount, nearly free when nothing
    // changed): a verdict needs a look at the mounts no older than the pass.
    const bool done = engine_.discover_processes(kProcessesPerSlice, true);
    const auto walked = monotonic_usec();
    sd_event_source_set_time_relative(s, done ? interval_usec_ : 0);
    sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
    resync_if_replaced();
    if (!done)
        return;
    start_fd_search();
    const auto namespaces = engine_.catalog().namespaces().size();
    host_.pass_ended(namespaces);
    spdlog::debug("Discovery pass ended: {} namespaces; last slice {} us, saving and metrics {} us",
                  namespaces, walked - started, monotonic_usec() - walked);
}

void DiscoveryTimers::start_fd_search() {
    if (!engine_.fds_due() || (fd_search_ && fd_search_->busy()))
        return;
    if (!fd_search_)
        fd_search_ = std::make_unique<FdSearchRunner>(
            event_, "/proc", [this](netns::FdFound found) { on_fd_search_done(std::move(found)); },
            [this](const char* why) {
                engine_.fd_search_abandoned();
                // Once per run at warning level: a host where searches overrun does so each time.
                spdlog::log(std::exchange(fd_search_warned_, true) ? spdlog::level::debug
                                                                   : spdlog::level::warn,
                            "Fd search given up: {}; the next one starts afresh", why);
            });
    if (auto r = fd_search_->start(engine_.start_fd_search()); !r) {
        engine_.fd_search_abandoned();
        if (!std::exchange(fd_search_warned_, true))
            spdlog::warn("Cannot start an fd search ({}; {} earlier search processes have not "
                         "ended): fd holders are not searched for now",
                         r.error().message(), fd_search_->ending());
    }
}

void DiscoveryTimers::on_fd_search_done(netns::FdFound found) {
    const auto& cost = fd_search_->last_cost();
    spdlog::debug("Fd search ended in {} ms ({} ms of CPU in its process): {} entries, {} "
                  "namespaces identified",
                  cost.wall_usec / 1000, cost.cpu_usec / 1000, found.looked_at,
                  found.identified.size());
    for (const auto& s : found.swapped)
        spdlog::warn("Process {} (uid {}) put another file under fd {} while nsidd copied it as a "
                     "socket: nothing of uid {} is copied again; the copy is never closed",
                     s.pid, s.uid, s.fd, s.uid);
    engine_.fd_search_done(std::move(found));
    if (engine_.fd_copies_denied() > 0 && !copies_denied_warned_) {
        copies_denied_warned_ = true;
        spdlog::warn("Cannot copy other processes' fds (pidfd_getfd refused: a container's "
                     "syscall filter, or no CAP_SYS_PTRACE): sockets held outside their "
                     "namespace are not found; such peers read as pinned");
    }
    host_.search_ended();
}

} // namespace nsidd::daemon
