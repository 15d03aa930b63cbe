// SPDX-License-Identifier: LGPL-2.1-or-later
// StormGate (util/storm_gate.hpp): when the event reader pauses, on a synthetic clock.
#include <cstdint>

#include <gtest/gtest.h>

#include "util/storm_gate.hpp"

namespace nsidd {
namespace {

constexpr StormGate::Config kConfig{150, 4, 500};

TEST(StormGate, EventsAfterQuietAreNeverDelayed) {
    // Reads 150 us or more apart, however many: never a pause.
    StormGate gate(kConfig);
    std::uint64_t now = 1'000'000;
    for (int i = 0; i < 1000; ++i, now += 150 + static_cast<std::uint64_t>(i % 7) * 1000)
        ASSERT_EQ(gate.read(now), 0U) << "read " << i;
    EXPECT_EQ(gate.pauses(), 0U);
}

TEST(StormGate, FewFastReadsAreNotAStorm) {
    // Three fast reads, then a quiet spell: the run starts over each time.
    StormGate gate(kConfig);
    std::uint64_t now = 1'000'000;
    for (int burst = 0; burst < 100; ++burst) {
        now += 10'000;
        for (int i = 0; i < 4; ++i, now += 20) // the first of four follows the quiet spell
            ASSERT_EQ(gate.read(now), 0U) << "burst " << burst << " read " << i;
    }
    EXPECT_EQ(gate.pauses(), 0U);
}

TEST(StormGate, AStormPausesUntilItEnds) {
    StormGate gate(kConfig);
    std::uint64_t now = 1'000'000;
    EXPECT_EQ(gate.read(now), 0U);
    for (int i = 1; i < 4; ++i)
        EXPECT_EQ(gate.read(now += 100), 0U) << "read " << i;
    // The fifth fast read (the fourth fast gap): a storm.
    ASSERT_EQ(gate.read(now += 100), 500U);
    // While events queued during each pause are there at once when it ends, it goes on.
    for (int i = 0; i < 50; ++i) {
        gate.resumed(now += 500);
        ASSERT_EQ(gate.read(now += 5), 500U) << "pause " << i;
    }
    EXPECT_EQ(gate.pauses(), 51U);
    // Resumed and nothing was waiting: the next event, whenever it comes, is read at once.
    gate.resumed(now += 500);
    EXPECT_EQ(gate.read(now += 400), 0U);
    EXPECT_EQ(gate.read(now += 2000), 0U);
}

TEST(StormGate, TheFirstReadIsNeverFast) {
    StormGate gate(StormGate::Config{150, 1, 500});
    EXPECT_EQ(gate.read(5), 0U); // no read before it: no gap to measure
    EXPECT_EQ(gate.read(10), 500U);
}

} // namespace
} // namespace nsidd
