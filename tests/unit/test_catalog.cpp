// SPDX-License-Identifier: LGPL-2.1-or-later
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string_view>

#include <atomic>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include "netns/discovery.hpp"
#include "netns/fd_scan.hpp"
#include "netns/id_cache.hpp"
#include "netns/mountinfo.hpp"

using nsidd::netns::parse_nsfs_mounts;

// Lines as Linux 6.18 writes them in /proc/self/mountinfo after `ip netns add`.
TEST(Mountinfo, FindsNetworkNamespaceMounts) {
    const auto mounts = parse_nsfs_mounts(
        "24 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "412 30 0:25 / /run/netns rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,mode=755\n"
        "415 412 0:4 net:[4026532201] /run/netns/blue rw shared:5 - nsfs nsfs rw\n"
        "416 412 0:4 net:[4026532316] /var/run/docker/netns/a\\040b rw - nsfs nsfs rw\n"
        "417 412 0:4 mnt:[4026532400] /run/mnt-ns rw - nsfs nsfs rw\n");
    ASSERT_EQ(mounts.size(), 2u);
    EXPECT_EQ(mounts[0].inode, 4026532201u);
    EXPECT_EQ(mounts[0].path, "/run/netns/blue");
    EXPECT_EQ(mounts[1].inode, 4026532316u);
    EXPECT_EQ(mounts[1].path, "/var/run/docker/netns/a b"); // \040 is a space
}

TEST(Mountinfo, OptionalFieldsBeforeTheSeparator) {
    // Zero or more optional fields (shared:, master:, propagate_from:, unbindable) come
    // before the "-"; the filesystem type is the field after it.
    const auto mounts = parse_nsfs_mounts(
        "415 412 0:4 net:[7] /a rw shared:5 master:3 propagate_from:2 - nsfs nsfs rw\n"
        "416 412 0:4 net:[8] /b rw - nsfs nsfs rw");
    ASSERT_EQ(mounts.size(), 2u);
    EXPECT_EQ(mounts[0].path, "/a");
    EXPECT_EQ(mounts[1].inode, 8u);
    // Its propagation: the peer group it is in, the one it receives from; 0 for none.
    EXPECT_EQ(mounts[0].peer_group, 5u);
    EXPECT_EQ(mounts[0].master, 3u);
    EXPECT_EQ(mounts[1].peer_group, 0u);
    EXPECT_EQ(mounts[1].master, 0u);
    const auto slave = parse_nsfs_mounts("1 1 0:4 net:[9] /x rw master:12 - nsfs nsfs rw\n"
                                         "2 1 0:4 net:[9] /y rw shared:x - nsfs nsfs rw\n");
    ASSERT_EQ(slave.size(), 2u);
    EXPECT_EQ(slave[0].peer_group, 0u);
    EXPECT_EQ(slave[0].master, 12u);
    EXPECT_EQ(slave[1].peer_group, 0u); // not a number: no group
}

TEST(Mountinfo, SkipsMalformedLines) {
    for (const char* bad : {
             "",
             "\n\n",
             "415 412 0:4 net:[4026532201] /run/netns/x rw nsfs nsfs rw\n", // no separator
             "415 412 0:4 net:[] /x rw - nsfs nsfs rw\n",
             "415 412 0:4 net:[12x] /x rw - nsfs nsfs rw\n",
             "415 412 0:4 net:[0] /x rw - nsfs nsfs rw\n",
             "415 412 0:4 net:[99999999999999999999999] /x rw - nsfs nsfs rw\n",
             "415 412 0:4 net:[5 /x rw - nsfs nsfs rw\n",
             "415 412 0:4 net:[5] /x rw -\n",
             "415 412 0:4 net:[5] /x rw - tmpfs tmpfs rw\n",
             "415 412 0:4 net:[5]\n",
             "- - - - - - - -\n",
         })
        EXPECT_TRUE(parse_nsfs_mounts(bad).empty()) << bad;
}

TEST(Mountinfo, EscapesAtTheEndOfAPath) {
    const auto mounts = parse_nsfs_mounts("1 1 0:4 net:[9] /x\\04 rw - nsfs nsfs rw\n"
                                          "1 1 0:4 net:[9] /y\\134 rw - nsfs nsfs rw\n");
    ASSERT_EQ(mounts.size(), 2u);
    EXPECT_EQ(mounts[0].path, "/x\\04"); // incomplete escape: kept as written
    EXPECT_EQ(mounts[1].path, "/y\\");
}

// Saved ids: the text a restarted nsidd trusts must be exactly what format_id_cache() writes,
// for this boot and this observer; anything else is rejected whole.
namespace {
const nsidd::netns::IdCacheOrigin kOrigin{"b00t", 7};
bool parses(std::string_view text) {
    return nsidd::netns::parse_id_cache(text, kOrigin, 4).has_value();
}
} // namespace

TEST(SavedIds, AcceptsWhatFormatWrites) {
    using nsidd::netns::format_id_cache;
    using nsidd::netns::IdCache;
    EXPECT_EQ(format_id_cache(kOrigin, IdCache{{}, {}, 5, {}, {}, {}, {}}),
              "nsidd-ids 4 b00t 7 5\n");
    EXPECT_EQ(format_id_cache(
                  kOrigin,
                  IdCache{{{9, 1}, {4101, 0}}, {{4101, 1234}}, 5, {{9, 2147483700}}, {}, {}, {}}),
              "nsidd-ids 4 b00t 7 5\n9 1 0 2147483700 0 0 -\n4101 0 1234 0 0 0 -\n");
    EXPECT_TRUE(parses("nsidd-ids 3 b00t 7 0\n")); // version 3 (nsidd before owners) too
    EXPECT_TRUE(parses("nsidd-ids 4 b00t 7 0\n"));
    const auto cache = nsidd::netns::parse_id_cache(
        "nsidd-ids 3 b00t 7 99\n4101 0 17 0\n18446744073709551615 2147483647 0 "
        "18446744073709551615\n",
        kOrigin);
    ASSERT_TRUE(cache);
    EXPECT_EQ(cache->saved_usec, 99u);
    EXPECT_EQ(cache->ids.size(), 2u);
    EXPECT_EQ(cache->ids.at(4101), 0);
    EXPECT_EQ(cache->ids.at(18446744073709551615u), 2147483647);
    EXPECT_EQ(cache->first_seen_usec,
              (std::unordered_map<std::uint64_t, std::uint64_t>{{4101, 17}}));
    EXPECT_EQ(cache->mount_ids, (std::unordered_map<std::uint64_t, std::uint64_t>{
                                    {18446744073709551615u, 18446744073709551615u}}));
    // Round trip.
    EXPECT_EQ(nsidd::netns::parse_id_cache(format_id_cache(kOrigin, *cache), kOrigin), cache);
}

TEST(SavedIds, KeepEvidenceAndOwners) {
    using nsidd::netns::format_id_cache;
    nsidd::netns::IdCache cache{{{9, 1}, {10, 2}}, {}, 5, {}, {}, {}, {}};
    cache.no_process_since_usec = {{9, 1000}};
    cache.unheld_since_usec = {{10, 2000}};
    // Parts with spaces, slashes, '%' and control bytes, and empty ones, survive as written.
    cache.owners = {{9, nsidd::Owner{"a b/c%.scope", "docker", "", "", "\n\x7f"}},
                    {10, nsidd::Owner{"", "", "", "", "netns-1"}}};
    const auto text = format_id_cache(kOrigin, cache);
    EXPECT_EQ(text, "nsidd-ids 4 b00t 7 5\n9 1 0 0 1000 0 a%20b%2Fc%25.scope/docker///%0A%7F\n"
                    "10 2 0 0 0 2000 ////netns-1\n");
    EXPECT_EQ(nsidd::netns::parse_id_cache(text, kOrigin), cache);
    // A namespace without an id keeps its evidence and owner under "-".
    cache.no_process_since_usec[11] = 3000;
    cache.owners[11] = nsidd::Owner{"", "docker", "", "", "f00d"};
    const auto with_idless = format_id_cache(kOrigin, cache);
    EXPECT_NE(with_idless.find("\n11 - 0 0 3000 0 /docker///f00d\n"), std::string::npos)
        << with_idless;
    const auto back = nsidd::netns::parse_id_cache(with_idless, kOrigin);
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, cache);
    EXPECT_EQ(back->ids.count(11), 0u);
    for (const char* bad : {
             "nsidd-ids 4 b00t 7 0\n9 - 0 0 0 0 -\n9 1 0 0 0 0 -\n", // a cookie twice
             "nsidd-ids 3 b00t 7 0\n9 - 0 0\n",                      // no "-" in version 3
             "nsidd-ids 4 b00t 7 0\n9 1 0 0 0 0\n",                  // no owner
             "nsidd-ids 4 b00t 7 0\n9 1 0 0 0 0 a/b/c/d\n",          // an owner part missing
             "nsidd-ids 4 b00t 7 0\n9 1 0 0 0 0 a/b/c/d/e/f\n",      // one too many
             "nsidd-ids 4 b00t 7 0\n9 1 0 0 0 0 ////\n",             // an owner saying nothing
             "nsidd-ids 4 b00t 7 0\n9 1 0 0 0 0 a%2/b/c/d/e\n",      // a cut escape
             "nsidd-ids 4 b00t 7 0\n9 1 0 0 0 0 a%zz/b/c/d/e\n",     // not hex
             "nsidd-ids 4 b00t 7 0\n9 1 0 0 x 0 -\n",                // a bad number
             "nsidd-ids 4 b00t 7 0\n9 1 0 0 -\n",                    // a v3 line in a v4 file
             "nsidd-ids 3 b00t 7 0\n9 1 0 0 0 0 -\n",                // a v4 line in a v3 file
         })
        EXPECT_FALSE(parses(bad)) << bad;
}

TEST(SavedIds, RejectsAnythingElse) {
    for (const char* bad : {
             "",
             "nsidd-ids 3 b00t 7 0",                                  // cut: no newline
             "nsidd-ids 3 other-boot 7 0\n4101 0 0 0\n",              // another boot
             "nsidd-ids 3 b00t 8 0\n4101 0 0 0\n",                    // another observer
             "nsidd-ids 2 b00t 7 0\n4101 0 0\n",                      // another format
             "nsidd-ids 3 b00t 7\n",                                  // no save time
             "nsidd-ids 3 b00t 7 x\n",                                // a bad save time
             "nsidd-ids 3 b00t 7 0\n4101 0 0 0",                      // cut line
             "nsidd-ids 3 b00t 7 0\n4101 0 0\n",                      // no mount id
             "nsidd-ids 3 b00t 7 0\n4101 0\n",                        // no first-seen
             "nsidd-ids 3 b00t 7 0\n4101\n",                          // no id
             "nsidd-ids 3 b00t 7 0\n4101 -1 0 0\n",                   // negative id
             "nsidd-ids 3 b00t 7 0\n4101 2147483648 0 0\n",           // id past INT32_MAX
             "nsidd-ids 3 b00t 7 0\n18446744073709551616 1 0 0\n",    // cookie past 2^64-1
             "nsidd-ids 3 b00t 7 0\n4101 1 0 18446744073709551616\n", // mount id past it
             "nsidd-ids 3 b00t 7 0\n4101  1 0 0\n",                   // two spaces
             "nsidd-ids 3 b00t 7 0\n4101 1 0 0 \n",                   // trailing space
             "nsidd-ids 3 b00t 7 0\n4101 1 0 0 0\n",                  // a field too many
             "nsidd-ids 3 b00t 7 0\n4101 1 0 0\n4101 2 0 0\n",        // a cookie twice
             "nsidd-ids 3 b00t 7 0\n1 1 0 0\n2 2 0 0\n3 3 0 0\n4 4 0 0\n5 5 0 0\n", // over max
             "nsidd-ids 3 b00t 7 0\n\n",                                            // empty line
         })
        EXPECT_FALSE(parses(bad)) << bad;
    // An empty boot id never matches.
    EXPECT_FALSE(nsidd::netns::parse_id_cache("nsidd-ids 3  7 0\n", {"", 7}));
}

// FdScan over a directory tree standing in for /proc: fds are symlinks, as in /proc/PID/fd.
TEST(FdScan, FindsNamespaceFdsByTheirLinks) {
    namespace fs = std::filesystem;
    const fs::path root = fs::temp_directory_path() / ("nsidd-fdscan-" + std::to_string(getpid()));
    fs::remove_all(root);
    const auto proc = [&](const std::string& pid, const std::string& comm,
                          const std::vector<std::pair<int, std::string>>& fds) {
        fs::create_directories(root / pid / "fd");
        std::ofstream(root / pid / "comm") << comm << '\n';
        for (const auto& [fd, target] : fds)
            fs::create_symlink(target, root / pid / "fd" / std::to_string(fd));
    };
    proc("123", "keeper", {{0, "/dev/null"}, {3, "net:[42]"}, {4, "net:[43]"}, {9, "net:[42]"}});
    proc("124", "other", {{0, "socket:[991]"}, {1, "net:[7]"}, {2, "mnt:[42]"}});
    proc("130", "late", {{5, "net:[43]"}});
    fs::create_directories(root / "self"); // not a process directory
    fs::create_directories(root / "125");  // a process without an fd directory (gone)
    nsidd::netns::FdScan scan(root.string());
    const std::atomic<bool> go{false};
    nsidd::netns::FdSearch search;
    search.inodes = {42, 43};
    auto found = scan.run(search, go);
    EXPECT_TRUE(found.complete);
    EXPECT_GT(found.looked_at, 10u);
    using H = nsidd::netns::FdHolder;
    ASSERT_EQ(found.holders.size(), 2u);
    std::sort(found.holders[42].begin(), found.holders[42].end(),
              [](const H& a, const H& b) { return a.fd < b.fd; });
    EXPECT_EQ(found.holders[42], (std::vector<H>{{123, "keeper", 3}, {123, "keeper", 9}}));
    std::sort(found.holders[43].begin(), found.holders[43].end(),
              [](const H& a, const H& b) { return a.pid < b.pid; });
    EXPECT_EQ(found.holders[43], (std::vector<H>{{123, "keeper", 4}, {130, "late", 5}}));
    // Another search, another inode: only what it seeks.
    fs::remove(root / "123" / "fd" / "3");
    search.inodes = {7};
    found = scan.run(search, go);
    EXPECT_EQ(found.holders.size(), 1u);
    EXPECT_EQ(found.holders.at(7), (std::vector<H>{{124, "other", 1}}));
    // Told to stop: incomplete.
    const std::atomic<bool> stop{true};
    EXPECT_FALSE(scan.run(search, stop).complete);
    fs::remove_all(root);
}

// The real /proc, a child of this process as the holder: a socket is matched by its namespace's
// cookie (through a copy of it), and a namespace no known one is gets identified through an nsfs fd
// (opened O_PATH, checked, reopened: an fd on it comes back) and through a socket.
TEST(FdScan, FindsAndIdentifiesThroughRealFds) {
    nsidd::UniqueFd ns(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(ns);
    struct stat st {};
    ASSERT_EQ(::fstat(ns.get(), &st), 0);
    const auto cookie = nsidd::netns::namespace_cookie(ns.get());
    if (!cookie)
        GTEST_FAIL() << "NS_GET_ID is missing (Linux < 6.18): the test cannot run here";
    nsidd::UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(sock);
    // A directory whose link reads "/", as a namespace file's does once its bind mount is
    // unmounted: never taken for one.
    nsidd::UniqueFd root(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root);
    struct stat root_st {};
    ASSERT_EQ(::fstat(root.get(), &root_st), 0);
    // The holder: a child with the fds (a search skips its own process and its parent).
    const pid_t holder = ::fork();
    ASSERT_GE(holder, 0);
    if (holder == 0) {
        ::pause();
        ::_exit(0);
    }
    struct Reap {
        pid_t pid;
        ~Reap() {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
    } reap{holder};
    nsidd::netns::FdScan scan("/proc");
    const std::atomic<bool> go{false};
    nsidd::netns::FdSearch search;
    search.sockets = {{*cookie, st.st_ino}};
    auto found = scan.run(search, go);
    ASSERT_TRUE(found.complete);
    const auto mine = [&](const std::vector<nsidd::netns::FdHolder>& hs, int fd, bool socket) {
        return std::any_of(hs.begin(), hs.end(), [&](const auto& h) {
            return h.pid == holder && h.fd == fd && h.socket == socket;
        });
    };
    ASSERT_TRUE(found.holders.count(st.st_ino));
    EXPECT_TRUE(mine(found.holders.at(st.st_ino), sock.get(), true));
    EXPECT_TRUE(found.identified.empty());
    // Identify: our namespace is not among the known ones.
    search = {};
    search.identify = true;
    found = scan.run(search, go);
    ASSERT_TRUE(found.complete);
    ASSERT_GE(found.identified.size(), 1u);
    const auto it = std::find_if(found.identified.begin(), found.identified.end(),
                                 [&](const auto& n) { return n.inode == st.st_ino; });
    ASSERT_NE(it, found.identified.end());
    EXPECT_EQ(it->cookie, *cookie);
    struct stat got {};
    ASSERT_EQ(::fstat(it->fd.get(), &got), 0);
    EXPECT_EQ(got.st_ino, st.st_ino);
    EXPECT_EQ(nsidd::netns::namespace_cookie(it->fd.get()).value_or(0), *cookie);
    EXPECT_TRUE(mine(found.holders.at(st.st_ino), ns.get(), false));
    EXPECT_TRUE(mine(found.holders.at(st.st_ino), sock.get(), true));
    EXPECT_TRUE(std::none_of(found.identified.begin(), found.identified.end(),
                             [&](const auto& n) { return n.inode == root_st.st_ino; }));
    // Unknown nsfs only: identified through the nsfs fd; no socket is copied for it.
    search = {};
    search.unknown_nsfs = true;
    found = scan.run(search, go);
    ASSERT_TRUE(found.complete);
    ASSERT_TRUE(found.holders.count(st.st_ino));
    EXPECT_TRUE(mine(found.holders.at(st.st_ino), ns.get(), false));
    EXPECT_FALSE(mine(found.holders.at(st.st_ino), sock.get(), true));
    EXPECT_TRUE(found.identified.empty()); // no fd kept on what is only reported
    EXPECT_NE(std::find(found.unknown.begin(), found.unknown.end(),
                        std::make_pair(static_cast<std::uint64_t>(st.st_ino), *cookie)),
              found.unknown.end());
    // Another nsidd's search process (of this user): passed over, its fds no holders.
    int sync[2];
    ASSERT_EQ(::pipe(sync), 0);
    const pid_t other_search = ::fork();
    ASSERT_GE(other_search, 0);
    if (other_search == 0) {
        ::prctl(PR_SET_NAME, nsidd::netns::kSearchComm);
        ::close(sync[0]);
        ::close(sync[1]); // renamed
        ::pause();
        ::_exit(0);
    }
    Reap reap_search{other_search};
    ::close(sync[1]);
    char byte;
    ASSERT_EQ(::read(sync[0], &byte, 1), 0); // EOF: it renamed itself
    ::close(sync[0]);
    search = {};
    search.inodes = {st.st_ino};
    found = scan.run(search, go);
    ASSERT_TRUE(found.holders.count(st.st_ino));
    EXPECT_TRUE(mine(found.holders.at(st.st_ino), ns.get(), false)); // the holder child
    for (const auto& h : found.holders.at(st.st_ino))
        EXPECT_NE(h.pid, other_search);
    // Known: nothing is opened for it.
    search.known_inodes = {st.st_ino};
    search.known_cookies = {*cookie};
    found = scan.run(search, go);
    EXPECT_TRUE(std::none_of(found.identified.begin(), found.identified.end(),
                             [&](const auto& n) { return n.inode == st.st_ino; }));
}

TEST(FdScan, FindingsRoundTripAndBadTextIsRejected) {
    using nsidd::netns::decode_found;
    nsidd::netns::FdFound found;
    found.looked_at = 12345;
    found.copies_denied = 2;
    found.complete = true;
    found.holders[4026532201] = {{812, "dockerd", 14, true}, {813, "with space", 3, false}};
    found.identified.push_back({4026532202, 8192, nsidd::UniqueFd(::open("/dev/null", O_RDONLY))});
    found.swapped.push_back({77, 1000, 5});
    found.unknown.emplace_back(4026532203, 8193);
    const auto text = nsidd::netns::encode_found(found);
    std::vector<nsidd::UniqueFd> fds;
    fds.emplace_back(::open("/dev/null", O_RDONLY));
    const auto back = decode_found(text, std::move(fds));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->looked_at, 12345u);
    EXPECT_EQ(back->copies_denied, 2u);
    EXPECT_TRUE(back->complete);
    EXPECT_EQ(back->holders, found.holders);
    ASSERT_EQ(back->identified.size(), 1u);
    EXPECT_EQ(back->identified[0].inode, 4026532202u);
    EXPECT_EQ(back->identified[0].cookie, 8192u);
    EXPECT_TRUE(back->identified[0].fd);
    EXPECT_EQ(back->swapped, found.swapped);
    EXPECT_EQ(back->unknown, found.unknown);
    // Fewer or more fds than I lines, a cut line, garbage, out-of-range numbers: rejected.
    EXPECT_FALSE(decode_found(text, {}));
    for (const std::string bad :
         {"", "X 1 2 3\n", "L 1 2 1", "L 1 2 1\nH 1 2 3 4 c\n", "L 1 2 1\nH 1 2 3\n",
          "L 1 2 1\nH 1 99999999999 3 0 c\n", "L 1 2 1\nS 1 2\n", "L 1 2 1 5\n", "L 1 2 1\nI 1 2\n",
          "L -1 2 1\n", "L 1 2 2\n", "L 1 2 1\nU 1\n", "L 1 2 1\nU 1 2 3\n"})
        EXPECT_FALSE(decode_found(bad, {})) << bad;
}
