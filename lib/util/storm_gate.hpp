// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace nsidd {

/// Decides when the reader of a stream of events pauses so that a storm's events queue up and
/// are read together: one wakeup for many events, not one each (docs/design.md, "Storms").
///
/// A storm is `run` reads in a row, each less than `gap_usec` after the one before, one of
/// which found two events or more waiting: events come on their own faster than they are read.
/// A client that causes one event at a time and waits for it (a request, then its answer) never
/// finds two, and is never paused. An event that comes after a quiet spell is read at once.
///
/// In a storm the reader pauses after each read; the read that ends a pause goes on with the
/// storm while it finds two events or more (each pause twice the last, up to
/// `max_pause_usec`), and ends it when it finds fewer.
class StormGate {
public:
    struct Config {
        std::uint64_t gap_usec = 250;   ///< reads closer than this are a storm's
        unsigned run = 4;               ///< after this many such reads in a row
        std::uint64_t pause_usec = 500; ///< the first pause
        /// Each pause that ends with events waiting doubles the next, up to this: a long storm
        /// is read a few hundred times a second, a short one is delayed little.
        std::uint64_t max_pause_usec = 4000;
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
            fast_ = 0;
            batched_ = events > 1;
        }
        last_usec_ = now_usec;
        if (fast_ < config_.run || !batched_)
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
            fast_ = 0;
            batched_ = false;
            return 0;
        }
        ++pauses_;
        pause_usec_ = std::min(pause_usec_ * 2, config_.max_pause_usec);
        return pause_usec_;
    }
    /// Pauses so far.
    std::uint64_t pauses() const noexcept { return pauses_; }

private:
    Config config_;
    std::uint64_t last_usec_ = 0;
    unsigned fast_ = 0;    // reads in a row less than gap_usec apart
    bool batched_ = false; // one of them found more than one event
    std::uint64_t pause_usec_ = 0;
    std::uint64_t pauses_ = 0;
};

} // namespace nsidd
