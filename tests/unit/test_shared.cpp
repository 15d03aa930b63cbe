// SPDX-License-Identifier: LGPL-2.1-or-later
// Shared<T> (util/shared.hpp) and Strings (util/strings.hpp): the reference-counted immutable
// values of identities. The sanitizer build runs these too, so a count off by one shows as a
// leak or a use after free.
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "util/shared.hpp"
#include "util/strings.hpp"

namespace nsidd {
namespace {

// Counts the values alive, so that a test sees when the last holder lets go.
struct Tracked {
    static inline int alive = 0;
    int value = 0;
    explicit Tracked(int v = 0) : value(v) { ++alive; }
    Tracked(const Tracked& other) : value(other.value) { ++alive; }
    Tracked(Tracked&& other) noexcept : value(other.value) { ++alive; }
    ~Tracked() { --alive; }
    bool operator==(const Tracked& other) const { return value == other.value; }
};

TEST(Shared, EmptyReadsAsADefaultValue) {
    Shared<std::vector<std::string>> names;
    EXPECT_FALSE(names);
    EXPECT_TRUE(names->empty());
    EXPECT_EQ(names, Shared<std::vector<std::string>>());
    EXPECT_FALSE(names == Shared<std::vector<std::string>>(std::vector<std::string>{}))
        << "unknown and known-empty differ";
}

TEST(Shared, CopiesShareOneValueThatLivesUntilTheLastCopyGoes) {
    Tracked::alive = 0;
    {
        Shared<Tracked> a(Tracked(7));
        EXPECT_EQ(Tracked::alive, 1);
        const Tracked* where = &*a;
        Shared<Tracked> b = a;
        Shared<Tracked> c;
        c = b;
        EXPECT_EQ(&*b, where);
        EXPECT_EQ(&*c, where);
        EXPECT_EQ(Tracked::alive, 1);
        a = Shared<Tracked>();
        b = Shared<Tracked>();
        EXPECT_EQ(Tracked::alive, 1) << "c still holds it";
        EXPECT_EQ(c->value, 7);
    }
    EXPECT_EQ(Tracked::alive, 0);
}

TEST(Shared, MoveTransfersWithoutCounting) {
    Tracked::alive = 0;
    {
        Shared<Tracked> a(Tracked(3));
        Shared<Tracked> b = std::move(a);
        EXPECT_FALSE(a); // NOLINT(bugprone-use-after-move): moved-from is empty, by contract
        EXPECT_EQ(b->value, 3);
        Shared<Tracked> c(Tracked(4));
        c = std::move(b);
        EXPECT_EQ(c->value, 3);
        EXPECT_EQ(Tracked::alive, 1) << "the value c held before was released";
    }
    EXPECT_EQ(Tracked::alive, 0);
}

TEST(Shared, SelfAssignmentKeepsTheValue) {
    Tracked::alive = 0;
    {
        Shared<Tracked> a(Tracked(5));
        Shared<Tracked>& same = a;
        a = same;
        EXPECT_EQ(a->value, 5);
        a = std::move(same);
        EXPECT_EQ(a->value, 5);
        EXPECT_EQ(Tracked::alive, 1);
    }
    EXPECT_EQ(Tracked::alive, 0);
}

TEST(Shared, ComparesByValueNotByPointer) {
    Shared<std::string> a(std::string("ip"));
    Shared<std::string> b(std::string("ip"));
    Shared<std::string> c(std::string("sleep"));
    EXPECT_EQ(a, b);
    EXPECT_FALSE(a == c);
}

TEST(Shared, AVectorOfCopiesReleasesEveryValue) {
    Tracked::alive = 0;
    {
        std::vector<Shared<Tracked>> many;
        for (int i = 0; i < 100; ++i) {
            many.emplace_back(Tracked(i));
            many.push_back(many.back()); // the vector grows: copies and moves mixed
        }
        EXPECT_EQ(Tracked::alive, 100);
        many.erase(many.begin(), many.begin() + 100);
        EXPECT_EQ(Tracked::alive, 50);
    }
    EXPECT_EQ(Tracked::alive, 0);
}

std::vector<std::string> all(const Strings& s) {
    return {s.begin(), s.end()};
}

TEST(Strings, HoldsTheStringsInOrder) {
    const Strings s{"/run/netns/a", "", "/x/a longer path than fifteen bytes"};
    EXPECT_FALSE(s.empty());
    EXPECT_EQ(s.size(), 3u);
    EXPECT_EQ(s.front(), "/run/netns/a");
    EXPECT_EQ(all(s), (std::vector<std::string>{"/run/netns/a", "",
                                                "/x/a longer path than fifteen bytes"}));
    EXPECT_TRUE(s.contains(""));
    EXPECT_FALSE(s.contains("/run/netns"));
    for (const std::string_view v : s)
        EXPECT_EQ(v.data()[v.size()], '\0') << "each string ends in a NUL";
}

TEST(Strings, EmptyHoldsNothingAndEqualsEveryEmptyList) {
    const Strings none;
    EXPECT_TRUE(none.empty());
    EXPECT_EQ(none.size(), 0u);
    EXPECT_EQ(none.begin(), none.end());
    EXPECT_EQ(none.front(), "");
    EXPECT_EQ(none, Strings(std::vector<std::string>{}));
    EXPECT_EQ(none, Strings{"a"}.without("a"));
    EXPECT_FALSE(none == Strings{""}) << "one empty string is not no string";
}

TEST(Strings, WithAndWithoutKeepTheListSortedAndLeaveTheOriginal) {
    const Strings b{"b"};
    const Strings abc = b.with("c").with("a");
    EXPECT_EQ(all(abc), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(all(b), (std::vector<std::string>{"b"})) << "copies are not changed";
    EXPECT_EQ(abc.with("b"), abc);
    EXPECT_EQ(all(abc.without("b")), (std::vector<std::string>{"a", "c"}));
    EXPECT_EQ(abc.without("z"), abc);
}

TEST(Strings, MergeIsTheSortedUnion) {
    EXPECT_EQ(all(Strings::merge(Strings{"a", "c"}, Strings{"b", "c", "d"})),
              (std::vector<std::string>{"a", "b", "c", "d"}));
    EXPECT_EQ(Strings::merge(Strings{}, Strings{"x"}), Strings{"x"});
    EXPECT_EQ(Strings::merge(Strings{"x"}, Strings{}), Strings{"x"});
}

TEST(Strings, ComparesByContent) {
    EXPECT_EQ(Strings({"a", "b"}), Strings(std::vector<std::string>{"a", "b"}));
    EXPECT_FALSE(Strings({"a", "b"}) == Strings({"ab"})) << "the NULs keep the strings apart";
    EXPECT_FALSE(Strings({"a"}) == Strings({"a", ""}));
}

TEST(Strings, CopiesLiveOnAfterTheOriginalGoes) {
    std::vector<Strings> copies;
    {
        Strings s(std::vector<std::string>{"/var/run/netns/with a space", "n"});
        for (int i = 0; i < 10; ++i)
            copies.push_back(s);
        Strings moved = std::move(s);
        EXPECT_TRUE(s.empty()); // NOLINT(bugprone-use-after-move): moved-from is empty
        copies.push_back(moved);
    }
    for (const auto& c : copies)
        EXPECT_EQ(all(c), (std::vector<std::string>{"/var/run/netns/with a space", "n"}));
}

} // namespace
} // namespace nsidd
