// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstdint>

namespace nsidd {

/// Decides when the reader of a stream of events pauses so that a storm's events queue up and
/// are read together: one wakeup for many events, not one each (docs/design.md, "Storms").
/// A storm is `run` reads in a row, each less than `gap_usec` after the one before (or after
/// reading resumed). An event that comes after a quiet spell is read at once: a pause only
/// ever follows reads that came fast, and only delays events that come as fast.
class StormGate {
public:
    struct Config {
        std::uint64_t gap_usec = 150;   ///< reads closer than this are a storm's
        unsigned run = 4;               ///< after this many such reads in a row
        std::uint64_t pause_usec = 500; ///< the reader stops this long before the next read
    };

    StormGate() = default;
    explicit StormGate(Config config) noexcept : config_(config) {}

    /// A read at `now_usec`. Returns how long to pause before the next one (0: none).
    std::uint64_t read(std::uint64_t now_usec) noexcept {
        fast_ = last_usec_ != 0 && now_usec - last_usec_ < config_.gap_usec ? fast_ + 1 : 0;
        last_usec_ = now_usec;
        if (fast_ < config_.run)
            return 0;
        ++pauses_;
        return config_.pause_usec;
    }
    /// Reading resumed after a pause, at `now_usec`: a read right after it (events queued
    /// meanwhile) keeps the storm going.
    void resumed(std::uint64_t now_usec) noexcept { last_usec_ = now_usec; }
    /// Pauses so far.
    std::uint64_t pauses() const noexcept { return pauses_; }

private:
    Config config_;
    std::uint64_t last_usec_ = 0;
    unsigned fast_ = 0;
    std::uint64_t pauses_ = 0;
};

} // namespace nsidd
