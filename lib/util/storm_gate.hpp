// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace nsidd {

/// Decides when the reader of a stream of events pauses so that a storm's events queue up and
/// are read together: one wakeup for many events, not one each. The policy (fast reads, runs,
/// probes, doubling pauses) is described once, in docs/design.md, "Storms"; Config holds its
/// numbers.
class StormGate {
public:
    struct Config {
        std::uint64_t gap_usec = 250;   ///< reads closer than this are fast
        unsigned run = 4;               ///< fast reads in a row, one of them batched: a storm
        unsigned probe_run = 8;         ///< fast reads in a row, none batched: a probe
        unsigned max_probe_run = 1024;  ///< the longest run between failed probes
        std::uint64_t pause_usec = 500; ///< the first pause (and a probe's)
        /// Each pause that ends with events waiting doubles the next, up to this: a long storm
        /// is read a few hundred times a second, a short one is delayed little.
        std::uint64_t max_pause_usec = 4000;
        /// A quiet spell this long forgets failed probes.
        std::uint64_t forget_usec = 1'000'000;
    };

    StormGate() = default;
    explicit StormGate(Config config) noexcept : config_(config) {}

    /// A read at `now_usec` that found `events`. Returns how long to pause before the next
    /// read (0: none; the reader watches the stream).
    std::uint64_t read(std::uint64_t now_usec, std::size_t events) noexcept {
        if (last_usec_ != 0 && now_usec - last_usec_ < config_.gap_usec) {
            ++fast_;
            batched_ = batched_ || events > 1;
        } else {
            if (last_usec_ == 0 || now_usec - last_usec_ >= config_.forget_usec)
                probe_run_ = config_.probe_run;
            fast_ = 0;
            batched_ = events > 1;
        }
        last_usec_ = now_usec;
        if (fast_ >= config_.run && batched_)
            probing_ = false;
        else if (fast_ >= probe_run_)
            probing_ = true;
        else
            return 0;
        ++pauses_;
        pause_usec_ = config_.pause_usec;
        return pause_usec_;
    }
    /// The read that ends a pause, at `now_usec`, found `events`. Returns the next pause, or 0:
    /// the storm is over, and another needs a run of fast reads again.
    std::uint64_t resumed(std::uint64_t now_usec, std::size_t events) noexcept {
        last_usec_ = now_usec;
        if (events < 2) {
            if (probing_)
                probe_run_ = std::min(probe_run_ * 2, config_.max_probe_run);
            probing_ = false;
            fast_ = 0;
            batched_ = false;
            return 0;
        }
        if (probing_) // a storm after all
            probe_run_ = config_.probe_run;
        probing_ = false;
        ++pauses_;
        pause_usec_ = std::min(pause_usec_ * 2, config_.max_pause_usec);
        return pause_usec_;
    }
    /// Pauses so far (probes included).
    std::uint64_t pauses() const noexcept { return pauses_; }

private:
    Config config_;
    std::uint64_t last_usec_ = 0;
    unsigned fast_ = 0;                      // reads in a row less than gap_usec apart
    bool batched_ = false;                   // one of them found more than one event
    bool probing_ = false;                   // the pause under way is a probe
    unsigned probe_run_ = config_.probe_run; // fast reads the next probe needs
    std::uint64_t pause_usec_ = 0;
    std::uint64_t pauses_ = 0;
};

} // namespace nsidd
