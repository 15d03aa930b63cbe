// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>

#include <systemd/sd-event.h>

#include "daemon/server.hpp"
#include "util/result.hpp"

namespace nsidd::daemon {

/// What waits until work pauses (no work for 100 ms, or 2 s after it was first due in a storm
/// that does not pause): returning freed heap to the system once enough work added up, and
/// the one journal line of a burst of deaths. One timer wakeup per 100 ms of storm, not a
/// rearm per event.
class QuietWork {
public:
    /// Adds the (disabled) quiet timer to `event`.
    Result<void> start(sd_event* event);
    /// `items` entries were worked on (a batch, a read, a pass): counted toward a trim, which
    /// waits for a quiet moment once they add up.
    void worked(std::size_t items);
    /// `deaths` of self's peers purged in one sweep: counted toward the burst's line.
    void died(std::size_t deaths);
    /// Returns freed heap to the system now (a large answer was sent and freed: one event,
    /// not a storm).
    void trim_now();

    // An output buffer at least this large freed (an answer of ~1000 rows): trim. Smaller
    // ones, and most Watch backlogs, are not worth a walk of the heap.
    static constexpr std::size_t kTrimAfterBytes = 256 * 1024;

private:
    void arm();
    static int on_timer(sd_event_source* s, uint64_t, void* userdata) noexcept;

    static constexpr std::size_t kTrimThreshold = 1000;
    static constexpr std::uint64_t kQuietUsec = 100'000;
    static constexpr std::uint64_t kQuietLatestUsec = 2'000'000;
    static constexpr std::size_t kBurstToLog = 10;

    EventSource timer_;
    std::size_t trim_debt_ = 0;         // entries worked on since the last malloc_trim
    std::uint64_t due_usec_ = 0;        // when the timer was armed (CLOCK_MONOTONIC)
    std::uint64_t last_work_usec_ = 0;  // when work it waits for last came
    std::size_t burst_deaths_ = 0;      // self's peers dead since the last quiet moment
    std::size_t burst_sweeps_ = 0;      // in this many sweeps
    std::uint64_t last_death_usec_ = 0; // when the last of them died (CLOCK_MONOTONIC)
};

} // namespace nsidd::daemon
