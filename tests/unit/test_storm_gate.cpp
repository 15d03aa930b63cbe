// SPDX-License-Identifier: LGPL-2.1-or-later
// StormGate (util/storm_gate.hpp): when the event reader pauses, on a synthetic clock.
#include <cstdint>

#include <gtest/gtest.h>

#include "util/storm_gate.hpp"

namespace nsidd {
namespace {

constexpr StormGate::Config kConfig{150, 4, 500, 4000};

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

TEST(StormGate, OneEventAtATimeIsNeverPaused) {
    // A client that causes an event and waits for it: fast reads, but never two events queued.
    StormGate gate(kConfig);
    std::uint64_t now = 1'000'000;
    for (int i = 0; i < 10'000; ++i)
        ASSERT_EQ(gate.read(now += 20, 1), 0U) << "read " << i;
    EXPECT_EQ(gate.pauses(), 0U);
}

TEST(StormGate, AStormPausesLongerWhileItLasts) {
    StormGate gate(kConfig);
    std::uint64_t now = 1'000'000;
    ASSERT_EQ(start_storm(gate, now), 500U);
    // Each pause that ends with events waiting doubles the next, up to the longest.
    std::uint64_t pause = 500;
    for (std::uint64_t want : {1000U, 2000U, 4000U, 4000U, 4000U}) {
        ASSERT_EQ(pause = gate.resumed(now += pause, 7), want);
    }
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
    StormGate gate(StormGate::Config{150, 1, 500, 4000});
    EXPECT_EQ(gate.read(5, 2), 0U); // no read before it: no gap to measure
    EXPECT_EQ(gate.read(10, 2), 500U);
}

} // namespace
} // namespace nsidd
