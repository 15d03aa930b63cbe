// SPDX-License-Identifier: LGPL-2.1-or-later
// MountTable against the real kernel: in a mount namespace of the test's own (root needed), nsfs
// bind mounts are made, stacked and removed, and after every step the listmount(2) reader must
// report what the mountinfo reader reports, and the mount points that changed. Runs past the
// reader's incremental rereads into its full listings.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "netns/mount_table.hpp"

namespace nsidd::netns {
namespace {

// (path, inode) pairs, sorted: what both readers must agree on.
std::vector<std::pair<std::string, std::uint64_t>> key(std::vector<NsfsMount> mounts) {
    std::vector<std::pair<std::string, std::uint64_t>> out;
    for (auto& m : mounts)
        out.emplace_back(std::move(m.path), m.inode);
    std::sort(out.begin(), out.end());
    return out;
}

class MountTableKernel : public ::testing::Test {
protected:
    void SetUp() override {
        // A failure, not a skip: the suite runs as root, and this is the listmount path's test.
        ASSERT_EQ(::geteuid(), 0u) << "needs root (a mount namespace of its own)";
        ASSERT_EQ(::unshare(CLONE_NEWNS | CLONE_NEWNET), 0) << std::strerror(errno);
        ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0)
            << std::strerror(errno);
        char tmpl[] = "/tmp/nsidd-mount-table-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        ASSERT_EQ(::mount("tmpfs", dir_.c_str(), "tmpfs", 0, nullptr), 0) << std::strerror(errno);
        // A second namespace to mount, besides our own: told apart by inode.
        ASSERT_EQ(::unshare(CLONE_NEWNET), 0) << std::strerror(errno);
        other_ = "/proc/self/ns/net";
        struct stat st {};
        ASSERT_EQ(::stat(other_.c_str(), &st), 0);
        other_inode_ = st.st_ino;
        listed_.emplace("/proc/self/mountinfo", true);
        text_.emplace("/proc/self/mountinfo", false);
        ASSERT_TRUE(listed_->uses_listmount()) << "listmount(2) missing (Linux < 6.8)";
        refresh(); // the mounts that were there before
    }
    void TearDown() override {
        if (!dir_.empty()) {
            ::umount2(dir_.c_str(), MNT_DETACH);
            ::rmdir(dir_.c_str());
        }
    }

    std::string point(int i) const { return dir_ + "/ns" + std::to_string(i); }
    void bind(const std::string& path, const std::string& ns = "/proc/self/ns/net") {
        if (::access(path.c_str(), F_OK) != 0) {
            const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
            ASSERT_GE(fd, 0) << path;
            ::close(fd);
        }
        ASSERT_EQ(::mount(ns.c_str(), path.c_str(), nullptr, MS_BIND, nullptr), 0)
            << path << ": " << std::strerror(errno);
    }
    void unmount(const std::string& path) {
        ASSERT_EQ(::umount2(path.c_str(), MNT_DETACH), 0) << path << ": " << std::strerror(errno);
    }
    // Both readers reread; they must agree on the mounts, and every point the text saw change
    // is reported by listmount too (which also sees a point remounted with the same namespace,
    // a new mount id, where the text cannot tell).
    std::vector<std::string> refresh() {
        EXPECT_TRUE(listed_->refresh());
        EXPECT_TRUE(text_->refresh());
        EXPECT_TRUE(listed_->uses_listmount());
        EXPECT_EQ(key(listed_->mounts()), key(text_->mounts()));
        const auto paths = [](std::vector<Strings> blocks) {
            std::vector<std::string> out;
            for (const auto& b : blocks) {
                EXPECT_EQ(b.size(), 1U);
                out.emplace_back(b.front());
            }
            return out;
        };
        auto changed = paths(listed_->take_changed_paths());
        for (const auto& p : paths(text_->take_changed_paths()))
            EXPECT_TRUE(std::binary_search(changed.begin(), changed.end(), p))
                << p << " changed, not reported";
        EXPECT_EQ(counts(*listed_), counts(*text_));
        EXPECT_TRUE(listed_->take_changed_paths().empty()) << "taken twice";
        return changed;
    }

    // Mount point -> nsfs mounts listed there.
    static std::map<std::string, std::uint32_t> counts(const MountTable& t) {
        std::map<std::string, std::uint32_t> out;
        for (const auto& [path, point] : t.paths())
            out.emplace(path.front(), point.mounts);
        return out;
    }

    std::string dir_, other_;
    std::uint64_t other_inode_ = 0;
    std::optional<MountTable> listed_, text_;
};

TEST_F(MountTableKernel, ReportsAddedStackedAndRemovedMountPoints) {
    bind(point(1));
    EXPECT_EQ(refresh(), std::vector<std::string>{point(1)});
    EXPECT_TRUE(refresh().empty()); // nothing changed since

    // Mounted over: the same point changes, and now counts two mounts.
    bind(point(1), other_);
    EXPECT_EQ(refresh(), std::vector<std::string>{point(1)});
    EXPECT_EQ(counts(*listed_).at(point(1)), 2u);
    // The top one gone: the point is still mounted, and changed.
    unmount(point(1));
    EXPECT_EQ(refresh(), std::vector<std::string>{point(1)});
    EXPECT_EQ(counts(*listed_).at(point(1)), 1u);
    unmount(point(1));
    EXPECT_EQ(refresh(), std::vector<std::string>{point(1)});
    EXPECT_EQ(listed_->paths().count(point(1)), 0u);
}

TEST_F(MountTableKernel, KeepsWhatAPointReachedUntilTheCatalogLetsGo) {
    bind(point(1));
    refresh();
    for (auto* t : {&*listed_, &*text_}) {
        EXPECT_TRUE(t->mounted(point(1)));
        t->reach(point(1), 11, 7);
    }
    unmount(point(1));
    EXPECT_EQ(refresh(), std::vector<std::string>{point(1)});
    for (auto* t : {&*listed_, &*text_}) {
        // Unmounted, but the catalog has yet to take the mount point from namespace 7.
        EXPECT_FALSE(t->mounted(point(1)));
        ASSERT_NE(t->point(point(1)), nullptr);
        EXPECT_EQ(t->point(point(1))->cookie, 7u);
        EXPECT_EQ(t->point(point(1))->inode, 11u);
        t->reach(point(1), 0, 0);
        EXPECT_EQ(t->point(point(1)), nullptr) << "neither mounted nor reaching: forgotten";
    }
    // Mounted again while still reached: counted afresh, what it reached kept until placed.
    bind(point(2));
    refresh();
    for (auto* t : {&*listed_, &*text_})
        t->reach(point(2), 12, 8);
    unmount(point(2));
    bind(point(2));
    refresh();
    for (auto* t : {&*listed_, &*text_}) {
        EXPECT_TRUE(t->mounted(point(2)));
        EXPECT_EQ(t->point(point(2))->cookie, 8u);
    }
    // A namespace let go of (it died): only the points that reach it, and a mounted point is
    // kept, reaching nothing.
    for (auto* t : {&*listed_, &*text_}) {
        EXPECT_TRUE(t->unreach(point(2), 9).empty()) << "reaches 8, not 9";
        EXPECT_EQ(t->point(point(2))->cookie, 8u);
        const auto block = t->unreach(point(2), 8);
        EXPECT_EQ(block.front(), point(2));
        ASSERT_NE(t->point(point(2)), nullptr);
        EXPECT_EQ(t->point(point(2))->cookie, 0u);
        EXPECT_EQ(t->point(point(2))->inode, 0u);
        EXPECT_TRUE(t->mounted(point(2)));
        EXPECT_TRUE(t->unreach(point(3), 0).empty()) << "no such point";
    }
    unmount(point(2));
    refresh();
    for (auto* t : {&*listed_, &*text_})
        EXPECT_EQ(t->point(point(2)), nullptr) << "unmounted, reaching nothing: forgotten";
}

TEST_F(MountTableKernel, AgreesWithTheTextThroughChurnPastTheFullListings) {
    // Bursts of mounts and unmounts between rereads, for more rereads than the reader makes
    // incrementally between two full listings; names with a space and a newline included.
    std::map<std::string, int> mounted; // point -> mounts stacked on it
    unsigned seed = 7;
    for (int step = 0; step < 150; ++step) {
        std::set<std::string> expect;
        for (int k = 0; k < 1 + step % 5; ++k) {
            seed = seed * 1103515245 + 12345;
            const int i = static_cast<int>((seed >> 16) % 40);
            const auto p = i % 13 == 0 ? dir_ + "/odd name\n" + std::to_string(i) : point(i);
            if (mounted[p] > 0 && (seed >> 8) % 2 == 0) {
                unmount(p);
                --mounted[p];
            } else {
                bind(p, (seed >> 4) % 3 == 0 ? other_ : "/proc/self/ns/net");
                ++mounted[p];
            }
            expect.insert(p);
        }
        const auto changed = refresh();
        // Only points touched are reported, each once.
        for (const auto& p : changed)
            EXPECT_TRUE(expect.count(p)) << "reported untouched " << p;
        EXPECT_TRUE(std::is_sorted(changed.begin(), changed.end()));
        EXPECT_EQ(std::adjacent_find(changed.begin(), changed.end()), changed.end());
        if (HasFailure())
            break;
    }
    for (const auto& [p, n] : mounted)
        for (int k = 0; k < n; ++k)
            unmount(p);
    refresh();
    for (const auto& [path, n] : listed_->paths())
        EXPECT_FALSE(path.front().starts_with(dir_)) << path.front() << " still listed";
}

} // namespace
} // namespace nsidd::netns
