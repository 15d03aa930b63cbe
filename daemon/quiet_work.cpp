// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/quiet_work.hpp"

#include <cstring>

#include <malloc.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/journal.hpp"
#include "util/time.hpp"

namespace nsidd::daemon {

Result<void> QuietWork::start(sd_event* event) {
    sd_event_source* s = nullptr;
    if (int r = sd_event_add_time_relative(event, &s, CLOCK_MONOTONIC, kQuietUsec, 10'000, on_timer,
                                           this);
        r < 0) {
        spdlog::error("Failed to add a timer: {}", std::strerror(-r));
        return fail_errno(-r);
    }
    timer_.reset(s);
    sd_event_source_set_enabled(s, SD_EVENT_OFF);
    return {};
}

void QuietWork::worked(std::size_t items) {
    // Counted across calls: a storm of small batches frees as much as one large one. The walk
    // of the heap waits for a quiet moment: one trim per storm, not one per thousand events.
    trim_debt_ += items;
    if (trim_debt_ >= kTrimThreshold)
        arm();
}

void QuietWork::died(std::size_t deaths) {
    // Told once the burst is over: one line for a storm, not one per read. A burst is deaths
    // with no quiet moment between them: a few earlier ones, too few to be told (so no line is
    // pending for them), do not count toward it.
    const auto now = monotonic_usec();
    if (burst_deaths_ < kBurstToLog && now - last_death_usec_ >= kQuietUsec)
        burst_deaths_ = burst_sweeps_ = 0;
    last_death_usec_ = now;
    burst_deaths_ += deaths;
    ++burst_sweeps_;
    if (burst_deaths_ >= kBurstToLog)
        arm();
}

void QuietWork::trim_now() {
    ::malloc_trim(0);
    trim_debt_ = 0;
}

void QuietWork::arm() {
    last_work_usec_ = monotonic_usec();
    if (!timer_)
        return;
    int enabled = SD_EVENT_OFF;
    sd_event_source_get_enabled(timer_.get(), &enabled);
    if (enabled == SD_EVENT_OFF) {
        due_usec_ = last_work_usec_;
        sd_event_source_set_time_relative(timer_.get(), kQuietUsec);
        sd_event_source_set_enabled(timer_.get(), SD_EVENT_ONESHOT);
    }
}

int QuietWork::on_timer(sd_event_source* s, uint64_t, void* userdata) noexcept {
    auto* self = static_cast<QuietWork*>(userdata);
    const auto now = monotonic_usec();
    // Work went on since it was armed: wait for a quiet moment again (one timer wakeup per
    // kQuietUsec of storm, not a rearm per event), unless it has waited long already.
    if (now - self->last_work_usec_ < kQuietUsec && now - self->due_usec_ < kQuietLatestUsec) {
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

} // namespace nsidd::daemon
