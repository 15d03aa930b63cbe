// SPDX-License-Identifier: LGPL-2.1-or-later
// FlatMap (util/flat_map.hpp): the registry's peer-ID tables and the per-row notes of the
// engine, the catalog and the mount table.
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "util/flat_map.hpp"

namespace nsidd {
namespace {

// A value that counts its live instances holding a payload: an erased entry must let go of
// what it held at once (a dead slot keeps only an empty value).
struct Held {
    static inline int alive = 0;
    std::string payload;
    Held() = default;
    explicit Held(std::string p) : payload(std::move(p)) { ++alive; }
    Held(const Held& o) : payload(o.payload) { alive += payload.empty() ? 0 : 1; }
    Held(Held&& o) noexcept : payload(std::move(o.payload)) { o.payload.clear(); }
    Held& operator=(const Held& o) {
        if (this != &o)
            *this = Held(o);
        return *this;
    }
    Held& operator=(Held&& o) noexcept {
        if (this != &o) {
            alive -= payload.empty() ? 0 : 1;
            payload = std::move(o.payload);
            o.payload.clear();
        }
        return *this;
    }
    ~Held() { alive -= payload.empty() ? 0 : 1; }
};

std::vector<std::pair<int, std::string>> contents(const FlatMap<int, Held>& m) {
    std::vector<std::pair<int, std::string>> out;
    for (const auto& [k, v] : m)
        out.emplace_back(k, v.payload);
    return out;
}

TEST(FlatMap, BehavesAsAStdMapThroughRandomInsertsErasesAndCompactions) {
    {
        FlatMap<int, Held> flat;
        std::map<int, std::string> model;
        std::mt19937 rng(15);
        for (int step = 0; step < 20000; ++step) {
            const int key = static_cast<int>(rng() % 300) - 20; // (some negative)
            switch (rng() % 8) {
            case 0:
            case 1:
            case 2: {
                const auto payload = "v" + std::to_string(step);
                const auto [it, inserted] = flat.emplace(key, Held(payload));
                const auto [mit, minserted] = model.emplace(key, payload);
                ASSERT_EQ(inserted, minserted) << "step " << step;
                ASSERT_EQ(it->first, key);
                ASSERT_EQ(it->second.payload, mit->second);
                break;
            }
            case 3:
            case 4:
                ASSERT_EQ(flat.erase(key), model.erase(key)) << "step " << step;
                break;
            case 5: { // erase every third row in one walk, as a purge sweep does
                int n = 0;
                for (auto it = flat.begin(); it != flat.end();)
                    if (n++ % 3 == 0) {
                        model.erase(it->first);
                        it = flat.erase(it);
                    } else {
                        ++it;
                    }
                break;
            }
            case 6:
                flat.compact();
                break;
            default: {
                const auto it = flat.find(key);
                const auto mit = model.find(key);
                ASSERT_EQ(it == flat.end(), mit == model.end()) << "step " << step;
                ASSERT_EQ(flat.count(key), model.count(key));
                if (mit != model.end()) {
                    ASSERT_EQ(flat.at(key).payload, mit->second);
                }
            }
            }
            ASSERT_EQ(flat.size(), model.size()) << "step " << step;
            ASSERT_EQ(Held::alive, static_cast<int>(model.size())) << "step " << step;
        }
        const std::vector<std::pair<int, std::string>> expected(model.begin(), model.end());
        EXPECT_EQ(contents(flat), expected);
        EXPECT_THROW(flat.at(1000), std::out_of_range);
    }
    EXPECT_EQ(Held::alive, 0);
}

// remove_if against a std::map, over maps with dead slots in them: what it removes comes out in
// key order, the rest stays, the dead go with them. `make(key)` gives a value; plain values take
// the branch-free pass, the others the plain one.
template <typename V, typename Make> void remove_if_matches_a_std_map(Make make) {
    std::mt19937 rng(29);
    for (int round = 0; round < 200; ++round) {
        FlatMap<int, V> flat;
        std::map<int, V> model;
        for (int k = 0; k < static_cast<int>(rng() % 200); ++k)
            if (rng() % 4 != 0) {
                flat.emplace(k, make(k));
                model.emplace(k, make(k));
            }
        for (int k = 0; k < 200; k += 1 + static_cast<int>(rng() % 5)) {
            if (const auto it = flat.find(k); it != flat.end())
                flat.erase(it); // through the iterator: the slot stays, dead
            model.erase(k);
        }
        const int modulus = 1 + static_cast<int>(rng() % 4);
        const auto doomed = [modulus](const auto& kv) {
            return kv.first % modulus == 0;
        };
        std::vector<std::pair<int, V>> removed{{-1, make(-1)}}; // appended to, not replaced
        const auto n = flat.remove_if(doomed, removed);
        std::vector<std::pair<int, V>> expected{{-1, make(-1)}};
        for (auto it = model.begin(); it != model.end();)
            if (doomed(*it)) {
                expected.emplace_back(*it);
                it = model.erase(it);
            } else {
                ++it;
            }
        ASSERT_EQ(n, expected.size() - 1) << "round " << round;
        ASSERT_EQ(removed, expected) << "round " << round;
        using Pairs = std::vector<std::pair<int, V>>;
        ASSERT_EQ(Pairs(flat.begin(), flat.end()), Pairs(model.begin(), model.end()));
        ASSERT_EQ(flat.slots(), model.size()) << "the dead are dropped too";
        for (const auto& [k, v] : model) // and what is left is found again
            ASSERT_NE(flat.find(k), flat.end());
    }
}

TEST(FlatMap, RemoveIfRemovesInKeyOrderKeepsTheRestAndDropsTheDead) {
    remove_if_matches_a_std_map<std::uint64_t>([](int k) { return std::uint64_t(k) * 7; });
    remove_if_matches_a_std_map<std::string>([](int k) { return "v" + std::to_string(k); });
}

TEST(FlatMap, ErasedSlotsStayUntilCompactedAndAReusedKeyTakesItsSlotBack) {
    FlatMap<int, Held> m;
    for (int k = 0; k < 1000; ++k)
        m.emplace(k, Held("x"));
    EXPECT_EQ(m.slots(), 1000u);
    // A burst of deaths: nothing moves, every value is let go at once.
    auto it = m.begin();
    for (int k = 0; k < 600; ++k)
        it = m.erase(it);
    EXPECT_EQ(it->first, 600); // erase returns the next live entry
    EXPECT_EQ(m.size(), 400u);
    EXPECT_EQ(m.slots(), 1000u);
    EXPECT_EQ(Held::alive, 400);
    // Ids are reused lowest first: they take their dead slots back in place.
    m.emplace(0, Held("again"));
    m.emplace(5, Held("again"));
    EXPECT_EQ(m.slots(), 1000u);
    EXPECT_EQ(m.begin()->first, 0);
    EXPECT_EQ(std::next(m.begin())->first, 5);
    EXPECT_EQ(std::next(m.begin(), 2)->first, 600);
    // A key between two others, next to a dead slot, takes that slot: still nothing moves.
    m.erase(m.find(700)); // through the iterator: no compaction
    m.emplace(1000, Held("appended"));
    EXPECT_EQ(m.slots(), 1001u);
    m.compact(); // 599 dead of 1001: dropped
    EXPECT_EQ(m.slots(), 402u);
    EXPECT_EQ(m.size(), 402u);
    EXPECT_EQ(m.count(700), 0u);
    EXPECT_EQ(m.at(1000).payload, "appended");
    int last = -1;
    for (const auto& [k, v] : m) {
        EXPECT_LT(last, k);
        last = k;
    }
    m.compact(); // nothing dead: nothing changes
    EXPECT_EQ(m.slots(), 402u);
}

TEST(FlatMap, AnEraseByKeyCompactsOnceHalfIsDeadAWalkThatErasesNever) {
    FlatMap<int, Held> m;
    for (int k = 0; k < 400; ++k)
        m.emplace(k, Held("x"));
    for (int k = 0; k < 200; ++k)
        m.erase(k);
    EXPECT_EQ(m.slots(), 400u); // exactly half: kept
    m.erase(200);
    EXPECT_EQ(m.slots(), 199u); // past half: the 201 dead dropped together
    EXPECT_EQ(m.begin()->first, 201);
    EXPECT_EQ(m.get(100), nullptr);
    ASSERT_NE(m.get(399), nullptr);
    m[399].payload = "y"; // operator[] finds the live entry
    EXPECT_EQ(m.at(399).payload, "y");
    EXPECT_EQ(m[500].payload, ""); // and makes an empty one where there was none
    EXPECT_EQ(m.size(), 200u);
    for (auto it = m.begin(); it != m.end();) // a walk erasing every entry moves nothing
        it = m.erase(it);
    EXPECT_EQ(m.slots(), 200u);
    EXPECT_TRUE(m.empty());
    m.compact();
    EXPECT_EQ(m.slots(), 0u);
}

TEST(FlatMap, ADeadNeighbourTakesANewKeyWithoutAMove) {
    FlatMap<int, Held> m;
    for (int k : {10, 20, 30})
        m.emplace(k, Held("x"));
    m.erase(20);
    m.emplace(25, Held("y")); // between 10 and 30, where 20 lay dead
    EXPECT_EQ(m.slots(), 3u);
    EXPECT_EQ(contents(m),
              (std::vector<std::pair<int, std::string>>{{10, "x"}, {25, "y"}, {30, "x"}}));
    m.erase(30);
    m.emplace(40, Held("z")); // above every key: the dead last slot takes it
    EXPECT_EQ(m.slots(), 3u);
    EXPECT_EQ(contents(m),
              (std::vector<std::pair<int, std::string>>{{10, "x"}, {25, "y"}, {40, "z"}}));
    const auto [it, inserted] = m.emplace(25, Held("again"));
    EXPECT_FALSE(inserted);
    EXPECT_EQ(it->second.payload, "y");
}

} // namespace
} // namespace nsidd
