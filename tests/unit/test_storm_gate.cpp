// SPDX-License-Identifier: LGPL-2.1-or-later
// StormGate (util/storm_gate.hpp): when the event reader pauses, on a synthetic clock.
#include <cstdint>

#include <gtest/gtest.h>

#include "util/storm_gate.hpp"

namespace nsidd {
namespace {

constexpr StormGate::Config kConfig{.gap_usec = 150,
                                    .run = 4,
                                    .probe_run = 8,
                                    .max_probe_run = 1024,
                                    .pause_usec = 500,
                                    .max_pause_usec = 4000,
                                    .forget_usec = 1'000'000};

// Starts a storm: five reads 100 us apart, the last finding two events. Returns the first pause.
std::uint64_t start_storm(StormGate& gate, std::uint64_t& now) {
    for (int i = 0; i < 4; ++i)
        EXPECT_EQ(gate.read(now += 100, 1), 0U) << "read " << i;
    return gate.read(now += 100, 2);
}

TEST(StormGate, EventsAfterQuietAreNeverDelayed) {
    // Reads 150 us or more apart, however many events each finds: never a pause.
    StormGate gate(kConfig);
    std::uint64_t now = 1'000'000;
    for (int i = 0; i < 1000; ++i, now += 150 + static_cast<std::uint64_t>(i % 7) * 1000)
        ASSERT_EQ(gate.read(now, 1 + i % 5), 0U) << "read " << i;
    EXPECT_EQ(gate.pauses(), 0U);
}

TEST(StormGate, FewFastReadsAreNotAStorm) {
    // Three fast reads, then a quiet spell: the run starts over each time.
    StormGate gate(kConfig);
    std::uint64_t now = 1'000'000;
    for (int burst = 0; burst < 100; ++burst) {
        now += 10'000;
        for (int i = 0; i < 4; ++i, now += 20) // the first of four follows the quiet spell
            ASSERT_EQ(gate.read(now, 3), 0U) << "burst " << burst << " read " << i;
    }
    EXPECT_EQ(gate.pauses(), 0U);
}

// A client that causes an event and waits until it is read: every read finds one, and the
// read that ends a probe finds the one it caused meanwhile. Returns the pauses.
std::uint64_t one_at_a_time(StormGate& gate, std::uint64_t& now, int reads) {
    for (int i = 0; i < reads; ++i) {
        if (const auto pause = gate.read(now += 20, 1)) {
            EXPECT_EQ(gate.resumed(now += pause, 1), 0U) << "a probe that found one event";
        }
    }
    return gate.pauses();
}

TEST(StormGate, OneEventAtATimeIsProbedEverLessOften) {
    // Probes after 8, 16, 32, ... 1024 fast reads, then every 1024 (the first read is not
    // fast): 15 in 10000 reads.
    StormGate gate(kConfig);
    std::uint64_t now = 1'000'000;
    EXPECT_EQ(one_at_a_time(gate, now, 8), 0U);
    EXPECT_EQ(one_at_a_time(gate, now, 1), 1U);
    EXPECT_EQ(one_at_a_time(gate, now, 15), 1U);
    EXPECT_EQ(one_at_a_time(gate, now, 1), 2U);
    EXPECT_EQ(one_at_a_time(gate, now, 10'000 - 25), 15U);
}

TEST(StormGate, AQuietSpellForgetsFailedProbes) {
    StormGate gate(kConfig);
    std::uint64_t now = 1'000'000;
    EXPECT_EQ(one_at_a_time(gate, now, 2041), 8U); // the next probe needs 1024
    now += 1'000'000;
    EXPECT_EQ(one_at_a_time(gate, now, 9), 9U); // one read after the spell, then 8 fast
}

TEST(StormGate, AProbeThatFindsEventsQueuedIsAStorm) {
    // Events on their own every 190 us, each read at once, one at a time: no read finds two
    // until a probe lets them queue.
    StormGate gate(StormGate::Config{.gap_usec = 250});
    std::uint64_t now = 1'000'000;
    for (int i = 0; i < 8; ++i)
        ASSERT_EQ(gate.read(now += 190, 1), 0U) << "read " << i;
    ASSERT_EQ(gate.read(now += 190, 1), 500U); // the eighth fast read (the ninth): a probe
    EXPECT_EQ(gate.resumed(now += 500, 3), 1000U);
    EXPECT_EQ(gate.resumed(now += 1000, 5), 2000U);
    EXPECT_EQ(gate.resumed(now += 2000, 11), 4000U);
    EXPECT_EQ(gate.resumed(now += 4000, 21), 4000U);
    // The stream stops: the storm ends, and the next probe needs 8 fast reads again.
    EXPECT_EQ(gate.resumed(now += 4000, 0), 0U);
    for (int i = 0; i < 7; ++i) // each fast: the first follows the read that ended the storm
        ASSERT_EQ(gate.read(now += 190, 1), 0U) << "read " << i;
    EXPECT_EQ(gate.read(now += 190, 1), 500U);
}

TEST(StormGate, AStormPausesLongerWhileItLasts) {
    StormGate gate(kConfig);
    std::uint64_t now = 1'000'000;
    ASSERT_EQ(start_storm(gate, now), 500U);
    // Each pause that ends with events waiting doubles the next, up to the longest.
    std::uint64_t pause = 500;
    for (std::uint64_t want : {1000U, 2000U, 4000U, 4000U, 4000U})
        ASSERT_EQ(pause = gate.resumed(now += pause, 7), want);
    EXPECT_EQ(gate.pauses(), 6U);
    // A pause that ends with one event or none ends the storm: the next reads are at once.
    EXPECT_EQ(gate.resumed(now += pause, 1), 0U);
    EXPECT_EQ(gate.read(now += 100, 1), 0U);
    EXPECT_EQ(gate.read(now += 2000, 5), 0U);
    EXPECT_EQ(gate.pauses(), 6U);
}

TEST(StormGate, ANewStormStartsShort) {
    StormGate gate(kConfig);
    std::uint64_t now = 1'000'000;
    ASSERT_EQ(start_storm(gate, now), 500U);
    EXPECT_EQ(gate.resumed(now += 500, 3), 1000U);
    EXPECT_EQ(gate.resumed(now += 1000, 0), 0U);
    // It takes a run of fast reads again, and pauses from the shortest.
    now += 100'000;
    EXPECT_EQ(start_storm(gate, now), 500U);
}

TEST(StormGate, TheFirstReadIsNeverFast) {
    StormGate gate(StormGate::Config{.gap_usec = 150, .run = 1});
    EXPECT_EQ(gate.read(5, 2), 0U); // no read before it: no gap to measure
    EXPECT_EQ(gate.read(10, 2), 500U);
}

} // namespace
} // namespace nsidd
