// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/event_path.hpp"

#include <algorithm>
#include <cstring>

#include <sys/epoll.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/journal.hpp"
#include "util/time.hpp"

namespace nsidd::daemon {

using mirror::ResyncReason;

Result<void> EventPath::start(unsigned resync_interval) {
    sd_event_source* s = nullptr;
    int r = sd_event_add_io(event_, &s, kernel_.event_fd(), EPOLLIN, on_io, this);
    if (r >= 0) {
        io_.reset(s);
        // (Accuracy 1 us: 0 would be sd-event's default of 250 ms.)
        r = sd_event_add_time_relative(event_, &s, CLOCK_MONOTONIC, 0, 1, on_resume, this);
    }
    if (r < 0) {
        spdlog::error("Failed to watch the event socket: {}", std::strerror(-r));
        return fail_errno(-r);
    }
    resume_.reset(s);
    sd_event_source_set_enabled(s, SD_EVENT_OFF);
    set_resync_interval(resync_interval);
    return {};
}

int EventPath::on_io(sd_event_source* s, int, uint32_t, void* userdata) noexcept {
    auto* self = static_cast<EventPath*>(userdata);
    const auto now = monotonic_usec();
    const auto events = self->read();
    // In a storm, the socket is left alone for a moment: its events queue up and the next
    // wakeup reads them together (docs/design.md, "Storms").
    if (const auto pause = self->storm_gate_.read(now, events)) {
        sd_event_source_set_enabled(s, SD_EVENT_OFF);
        sd_event_source_set_time_relative(self->resume_.get(), pause);
        sd_event_source_set_enabled(self->resume_.get(), SD_EVENT_ONESHOT);
    }
    return 0;
}

int EventPath::on_resume(sd_event_source* s, uint64_t, void* userdata) noexcept {
    auto* self = static_cast<EventPath*>(userdata);
    // The read the pause waited for is done here, with the socket still off: while the storm
    // lasts, a wakeup per pause and no switching the socket on and off again.
    const auto now = monotonic_usec();
    if (const auto pause = self->storm_gate_.resumed(now, self->read())) {
        sd_event_source_set_time_relative(s, pause);
        sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
    } else {
        sd_event_source_set_enabled(self->io_.get(), SD_EVENT_ON);
    }
    return 0;
}

std::size_t EventPath::read() {
    if (overrun_resync_pending_) {
        // An overrun resync is due: the snapshot it takes supersedes whatever is read now.
        kernel_.discard();
        return 0;
    }
    const auto applied = engine_.apply_events();
    if (applied.events > 0 && !applied.lost)
        metrics_.observe_batch(applied.events);
    host_.changed(applied.changes);
    if (engine_.refresh_due())
        host_.ids_unexplained();
    if (applied.lost) {
        log_notable(Notable::Overrun, spdlog::level::warn,
                    fmt::format("Lost nsid events (receive buffer overrun or malformed message, "
                                "{} overruns so far); resyncing",
                                kernel_.stats().overruns));
        overrun_resync();
    }
    host_.stepped();
    return applied.events;
}

void EventPath::overrun_resync() {
    // Overruns come in storms, and reading a large table costs: resync at once, or, if the
    // last one ended recently, once it has been idle ten times as long as it took. The mirror
    // is exact again shortly after the storm, without resyncing through all of it.
    const auto& st = engine_.stats();
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

void EventPath::defer_resync(std::uint64_t delay_usec) {
    // Until it runs, events read are dropped: the snapshot it takes supersedes them.
    overrun_resync_pending_ = true;
    if (overrun_timer_) {
        sd_event_source_set_time_relative(overrun_timer_.get(), delay_usec);
        sd_event_source_set_enabled(overrun_timer_.get(), SD_EVENT_ONESHOT);
        return;
    }
    sd_event_source* s = nullptr;
    if (sd_event_add_time_relative(event_, &s, CLOCK_MONOTONIC, delay_usec, 1000, on_overrun_timer,
                                   this) < 0) {
        overrun_resync_pending_ = false;
        return; // the next overrun or the periodic resync tries again
    }
    overrun_timer_.reset(s);
}

int EventPath::on_overrun_timer(sd_event_source*, uint64_t, void* userdata) noexcept {
    auto* self = static_cast<EventPath*>(userdata);
    self->kernel_.discard();
    (void)self->resync(ResyncReason::Overrun);
    self->host_.stepped();
    return 0;
}

Result<void> EventPath::resync(ResyncReason reason) {
    // Whatever the reason, this snapshot supersedes a deferred overrun resync.
    overrun_resync_pending_ = false;
    if (overrun_timer_)
        sd_event_source_set_enabled(overrun_timer_.get(), SD_EVENT_OFF);
    auto changes = engine_.resync(reason);
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
    const auto& st = engine_.stats();
    metrics_.observe_resync(st.last_resync_duration_usec);
    if (reason != ResyncReason::Startup)
        log_notable(Notable::Resync, *changes == 0 ? spdlog::level::debug : spdlog::level::info,
                    fmt::format("Resynced ({}) in {} us with {} probes: {} changes",
                                to_string(reason), st.last_resync_duration_usec, st.last_probes,
                                *changes));
    // A large read's temporaries (probe lists, scan results) count toward a trim too.
    host_.changed(st.last_probes);
    return {};
}

void EventPath::set_resync_interval(unsigned seconds) {
    resync_interval_ = seconds;
    arm_resync_timer();
}

void EventPath::arm_resync_timer() {
    if (resync_interval_ == 0) {
        resync_timer_.reset();
        return;
    }
    const std::uint64_t usec = std::uint64_t{resync_interval_} * 1'000'000u;
    if (resync_timer_) {
        sd_event_source_set_time_relative(resync_timer_.get(), usec);
        sd_event_source_set_enabled(resync_timer_.get(), SD_EVENT_ONESHOT);
        return;
    }
    sd_event_source* s = nullptr;
    if (sd_event_add_time_relative(event_, &s, CLOCK_MONOTONIC, usec, 1'000'000, on_resync_timer,
                                   this) >= 0)
        resync_timer_.reset(s);
}

int EventPath::on_resync_timer(sd_event_source*, uint64_t, void* userdata) noexcept {
    auto* self = static_cast<EventPath*>(userdata);
    (void)self->resync(ResyncReason::Periodic);
    self->arm_resync_timer();
    self->host_.stepped();
    return 0;
}

} // namespace nsidd::daemon
