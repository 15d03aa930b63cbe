// SPDX-License-Identifier: LGPL-2.1-or-later
// The flat per-row tables of the engine and the catalog (util/flat_table.hpp).
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "util/flat_table.hpp"

namespace nsidd {
namespace {

struct Note {
    std::uint64_t row_since = 0;
    int value = 0;
    bool blank() const noexcept { return row_since == 0; }
};

std::vector<std::int32_t> ids(const ByNsid<Note>& t) {
    std::vector<std::int32_t> out;
    for (const auto& [nsid, note] : t)
        out.push_back(nsid);
    return out;
}

TEST(ByNsid, KeepsIdsInOrderWhereverTheyArrive) {
    ByNsid<Note> t;
    for (std::int32_t n : {5, 1, 9, 3, 7})
        t[n] = Note{100u + static_cast<std::uint64_t>(n), n};
    EXPECT_EQ(ids(t), (std::vector<std::int32_t>{1, 3, 5, 7, 9}));
    ASSERT_NE(t.find(7), nullptr);
    EXPECT_EQ(t.find(7)->value, 7);
    EXPECT_EQ(t.find(4), nullptr);
    EXPECT_EQ(t.find(10), nullptr);
}

TEST(ByNsid, ATakenBackEntryIsBlankAndItsIdTakesTheSlotBack) {
    ByNsid<Note> t;
    for (std::int32_t n = 0; n < 10; ++n)
        t[n] = Note{1, n};
    t.erase(4);
    ASSERT_NE(t.find(4), nullptr); // still there, blank: it matches no row
    EXPECT_EQ(t.find(4)->row_since, 0u);
    EXPECT_EQ(t.size(), 10u);
    t[4] = Note{2, 40}; // the id reused: same slot
    EXPECT_EQ(t.size(), 10u);
    EXPECT_EQ(t.find(4)->value, 40);
    t.erase(4);
    t.erase(4);  // a second erase of a blank counts nothing
    t.erase(11); // absent: nothing
    EXPECT_EQ(t.size(), 10u);
}

TEST(ByNsid, BlanksAreDroppedOnceTheyAreHalfTheTable) {
    ByNsid<Note> t;
    for (std::int32_t n = 0; n < 400; ++n)
        t[n] = Note{1, n};
    for (std::int32_t n = 0; n < 200; ++n)
        t.erase(n);
    EXPECT_EQ(t.size(), 400u); // exactly half: kept
    t.erase(200);
    EXPECT_EQ(t.size(), 199u); // past half: the 201 blanks dropped together
    EXPECT_EQ(ids(t).front(), 201);
    EXPECT_EQ(t.find(100), nullptr);
    ASSERT_NE(t.find(399), nullptr);
    EXPECT_EQ(t.find(399)->value, 399);
}

} // namespace
} // namespace nsidd
