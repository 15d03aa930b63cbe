// SPDX-License-Identifier: LGPL-2.1-or-later
// The engine against a simulated kernel (sim_kernel.hpp). Whenever every event has been applied
// (and a resync followed every loss), the registry must equal the kernel's tables, and every
// identity on a row must be that of the id's current holder.
#include "mirror/engine.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "sim_kernel.hpp"

namespace nsidd::mirror {
namespace {

using namespace sim;

// The daemon's fd search (run in a process of its own there), here over the simulated /proc.
void search_fds(Engine& engine, Sim& sim) {
    ASSERT_TRUE(engine.fds_due());
    const std::atomic<bool> go{false};
    netns::FdScan scan((sim.root() / "proc").string());
    engine.fd_search_done(scan.run(engine.start_fd_search(), go));
    EXPECT_FALSE(engine.fds_due());
}

// The state as the daemon serves it: settled first.
PeerState settled_state(Engine& engine, Observer o, const registry::Entry& entry) {
    engine.settle();
    return engine.state(o, entry);
}

class CutDumps : public ::testing::TestWithParam<std::size_t> {};

TEST_P(CutDumps, BootstrapFindsEveryId) {
    Sim sim;
    sim.cut = GetParam();
    sim.batch([&] {
        for (int i = 0; i < 3000; ++i)
            sim.assign_self(i % 3 == 2 ? sim.create() : sim.named("n" + std::to_string(i)));
        // Sparse explicit ids past any cut: reachable ones are found by asking them.
        sim.assign_self(sim.named("sparse"), 100000);
        sim.assign_self(sim.named("top"), INT32_MAX);
    });
    sim.queue.clear(); // all of this happened before nsidd started
    FakeClock clock;
    Engine engine(sim, config(sim), clock.clock());
    ASSERT_TRUE(engine.resync(ResyncReason::Startup));
    EXPECT_EQ(tables_of(engine.registry()), sim.tables());
    EXPECT_TRUE(engine.stats().last_dump_truncated);
    expect_identities(sim, engine);
    // Asked: each reachable namespace once, the dense range's gaps; not the whole id space.
    EXPECT_LT(sim.questions, 3000u + 600u + 2u) << "cut " << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Mirror, CutDumps, ::testing::Values(134, 901, 1158));

TEST(Mirror, UncutDumpAsksNothing) {
    Sim sim;
    for (int i = 0; i < 100; ++i)
        sim.assign_self(sim.create());
    sim.queue.clear();
    Engine engine(sim, config(sim));
    ASSERT_TRUE(engine.resync(ResyncReason::Startup));
    EXPECT_EQ(tables_of(engine.registry()), sim.tables());
    EXPECT_EQ(sim.questions, 0u);
}

TEST(Mirror, SparseUnreachableIdPastTheCut) {
    Sim sim;
    sim.cut = 134;
    for (int i = 0; i < 500; ++i)
        sim.assign_self(sim.create());
    Engine engine(sim, config(sim));
    sim.queue.clear();
    ASSERT_TRUE(engine.resync(ResyncReason::Startup));
    // An unreachable namespace gets a sparse id; the registry learns it from its event.
    const int hidden = sim.create();
    sim.assign_self(hidden, 50000);
    settle(engine);
    ASSERT_TRUE(engine.registry().table(kSelf)->rows.count(50000));
    // A resync past the cut must not drop it: nothing but the registry knows to ask for it.
    sim.overrun();
    settle(engine);
    EXPECT_EQ(tables_of(engine.registry()), sim.tables());
    // It dies while events are lost: the resync finds it gone and records the death.
    sim.kill({hidden});
    sim.overrun();
    settle(engine);
    EXPECT_EQ(tables_of(engine.registry()), sim.tables());
    ASSERT_FALSE(engine.registry().history().empty());
    EXPECT_EQ(engine.registry().history().back().nsid, 50000);
}

// Overruns that swallow a death and the reuse of its id (DEL and NEW both lost): the resync
// must tell the replaced holder from a kept one, record the death with the old identity and
// name the new holder (the scenario of 8 and of 3000 namespaces).
void replaced_under_overrun(int count, std::size_t cut) {
    Sim sim;
    sim.cut = cut;
    FakeClock clock;
    Engine engine(sim, config(sim), clock.clock());
    ASSERT_TRUE(engine.resync(ResyncReason::Startup));
    std::vector<int> old;
    sim.batch([&] {
        for (int i = 0; i < count; ++i) {
            old.push_back(sim.named("old" + std::to_string(i)));
            sim.assign_self(old.back());
        }
    });
    settle(engine);
    engine.discover_mounts();
    std::map<Nsid, std::uint64_t> old_cookies;
    for (const auto& [k, row] : engine.registry().table(kSelf)->rows) {
        const auto& peer = engine.peer(k);
        ASSERT_TRUE(peer.cookie) << k;
        old_cookies[k] = *peer.cookie;
    }
    sim.batch([&] {
        sim.kill(old);
        for (int i = 0; i < count; ++i)
            sim.assign_self(sim.named("new" + std::to_string(i))); // the same ids again
    });
    sim.overrun();
    clock.now += 1'000'000;
    settle(engine);
    engine.discover_mounts();
    EXPECT_EQ(tables_of(engine.registry()), sim.tables());
    expect_identities(sim, engine);
    const auto& history = engine.registry().history();
    ASSERT_EQ(history.size(), static_cast<std::size_t>(count));
    for (const auto& d : history) {
        ASSERT_TRUE(d.peer.cookie);
        EXPECT_EQ(*d.peer.cookie, old_cookies.at(d.nsid));
    }
    EXPECT_EQ(engine.registry().counters().deaths, static_cast<std::size_t>(count));
    EXPECT_EQ(engine.stats().replaced, static_cast<std::size_t>(count));
    for (const auto& [k, row] : engine.registry().table(kSelf)->rows)
        EXPECT_NE(engine.state(kSelf, row.entry), PeerState::Pinned) << k;
}

TEST(Mirror, ReplacedUnderOverrun) {
    replaced_under_overrun(8, 1158);
}

TEST(Mirror, ReplacedUnderOverrunAtScale) {
    replaced_under_overrun(3000, 1158);
}

TEST(Mirror, RestartWithSavedIds) {
    Sim sim;
    std::vector<int> named;
    sim.batch([&] {
        for (int i = 0; i < 1500; ++i) {
            named.push_back(sim.named("r" + std::to_string(i)));
            sim.assign_self(named.back());
        }
    });
    sim.queue.clear();
    const auto cache = (sim.root() / "ids").string();
    std::size_t cold = 0;
    FakeClock clock;
    const auto first_seen = clock.now;
    {
        Engine engine(sim, config(sim), clock.clock());
        ASSERT_FALSE(engine.load_ids(cache)); // nothing saved yet
        ASSERT_TRUE(engine.resync(ResyncReason::Startup));
        cold = std::exchange(sim.questions, 0);
        clock.now += 5'000'000;
        ASSERT_TRUE(engine.save_ids(cache));
    }
    const auto saved = clock.now;
    // While it is down: deaths and births (their events are not seen by anyone); the births
    // reuse the dead ids.
    std::vector<int> dying(named.begin(), named.begin() + 150);
    std::set<std::uint64_t> dead_cookies;
    for (int n : dying)
        dead_cookies.insert(sim.ns.at(n).cookie);
    sim.batch([&] {
        sim.kill(dying);
        for (int i = 0; i < 100; ++i)
            sim.assign_self(sim.named("n" + std::to_string(i)));
    });
    sim.queue.clear();
    clock.now += 10'000'000;
    const auto restarted = clock.now;
    Engine engine(sim, config(sim), clock.clock());
    ASSERT_TRUE(engine.load_ids(cache));
    ASSERT_TRUE(engine.resync(ResyncReason::Startup));
    EXPECT_EQ(tables_of(engine.registry()), sim.tables());
    expect_identities(sim, engine);
    EXPECT_LT(sim.questions * 2, cold) << "warm " << sim.questions << ", cold " << cold;
    discover(engine);
    engine.settle();
    // Ages survive the restart: the survivors were first seen by the first run, the newborn now.
    std::size_t old = 0;
    for (const auto& [k, row] : engine.registry().table(kSelf)->rows) {
        const auto since = engine.view(kSelf, row.entry).since_usec;
        const auto& names = engine.peer(k).names;
        const bool newborn = names.front().starts_with("n");
        EXPECT_EQ(since, newborn ? restarted : first_seen) << names.front();
        old += !newborn;
    }
    EXPECT_EQ(old, named.size() - dying.size());
    // The 150 that died while it was down are in its history as such, with the window (the
    // save before the stop, the start), and their first-seen time.
    std::set<std::uint64_t> recorded;
    for (const auto& d : engine.registry().history()) {
        EXPECT_EQ(d.down_since_usec, saved);
        EXPECT_EQ(d.died_usec, restarted);
        EXPECT_EQ(d.since_usec, first_seen);
        recorded.insert(d.peer.cookie.value_or(0));
    }
    EXPECT_EQ(recorded, dead_cookies);
    // A death seen from now on keeps the state it had and the true lifetime.
    const auto before = engine.registry().history().size();
    sim.kill({named.back()});
    settle(engine);
    ASSERT_EQ(engine.registry().history().size(), before + 1);
    const auto& last = engine.registry().history().back();
    EXPECT_EQ(last.state, PeerState::Mounted);
    EXPECT_EQ(last.since_usec, first_seen);
    EXPECT_EQ(last.down_since_usec, 0u);
    // A file for another boot is not taken.
    write(cache, "nsidd-ids 2 another-boot 4096 0\n4103 0 0\n");
    Engine other(sim, config(sim));
    EXPECT_FALSE(other.load_ids(cache));
}

// A saved id file whose ids were swapped (tampered, or written by a buggy tool) must not be
// trusted: the first ids used are checked at once, the rest a few per discovery pass, and each
// line the kernel contradicts is dropped alone: the rows of the right lines never lose their
// identity, and the swapped ones are right once checked.
void tampered_cache(int count, int first_swapped) {
    SCOPED_TRACE("swapped at " + std::to_string(first_swapped));
    Sim sim;
    sim.batch([&] {
        for (int i = 0; i < count; ++i)
            sim.assign_self(sim.named("r" + std::to_string(1000 + i)));
    });
    sim.queue.clear();
    const auto cache = (sim.root() / "ids").string();
    {
        Engine engine(sim, config(sim));
        ASSERT_TRUE(engine.resync(ResyncReason::Startup));
        discover(engine);
        ASSERT_TRUE(engine.save_ids(cache));
    }
    // Swap the ids of two namespaces (met in this order: their names sort so).
    const auto a = sim.ns.at(sim.self.at(first_swapped)).cookie;
    const auto b = sim.ns.at(sim.self.at(first_swapped + 1)).cookie;
    std::string text;
    {
        std::ifstream in(cache);
        for (std::string line; std::getline(in, line);) {
            const auto sp = line.find(' ');
            const auto cookie = line.substr(0, sp);
            if (cookie == std::to_string(a))
                line = cookie + " " + std::to_string(first_swapped + 1) + " 0 0 0 0 -";
            else if (cookie == std::to_string(b))
                line = cookie + " " + std::to_string(first_swapped) + " 0 0 0 0 -";
            text += line + "\n";
        }
    }
    write(cache, text);
    Engine engine(sim, config(sim));
    ASSERT_TRUE(engine.load_ids(cache));
    ASSERT_TRUE(engine.resync(ResyncReason::Startup));
    const auto right_rows_known = [&] {
        for (const auto& [nsid, row] : engine.registry().table(kSelf)->rows) {
            if (nsid == first_swapped || nsid == first_swapped + 1)
                continue;
            const auto& peer = engine.peer(nsid);
            ASSERT_TRUE(peer.cookie) << "row " << nsid << " lost its identity";
            EXPECT_EQ(*peer.cookie, sim.ns.at(sim.self.at(nsid)).cookie);
        }
    };
    for (int pass = 0; pass < count / 16 + 2; ++pass) {
        discover(engine);
        right_rows_known();
        engine.refresh_ids(UINT64_MAX);
        right_rows_known();
    }
    EXPECT_EQ(tables_of(engine.registry()), sim.tables());
    expect_identities(sim, engine);
    ASSERT_TRUE(engine.peer(first_swapped).cookie);
    EXPECT_EQ(*engine.peer(first_swapped).cookie, a);
    EXPECT_EQ(*engine.peer(first_swapped + 1).cookie, b);
    EXPECT_EQ(engine.catalog().stats().saved_ids_rejected, 2u); // the two lines, alone
}

TEST(Mirror, TamperedSavedIdsAreCaught) {
    tampered_cache(100, 0);  // among the first ids used: checked at once
    tampered_cache(100, 90); // among the last: checked after a few passes
}

// The daemon goes on with an unfinished round shortly, and leaves a new round to the next mount
// rescan: refresh_ids says which of the two it is.
TEST(Mirror, RoundsOfQuestionsSayWhenTheyEnd) {
    Sim sim;
    Engine engine(sim, config(sim));
    ASSERT_TRUE(engine.resync(ResyncReason::Startup));
    for (int i = 0; i < 6; ++i)
        sim.named("n" + std::to_string(i)); // known through their mounts, without ids
    engine.discover_mounts();
    EXPECT_FALSE(engine.refresh_due());
    // An id for a namespace reachable nowhere: no question can explain it, so a round asks
    // every namespace without an id.
    sim.assign_self(sim.create());
    settle(engine);
    ASSERT_TRUE(engine.refresh_due());
    const auto asked = sim.questions;
    // Out of time at once: the first chunk is asked all the same, and the round goes on.
    EXPECT_FALSE(engine.refresh_ids([] { return true; }));
    EXPECT_GT(sim.questions, asked);
    EXPECT_TRUE(engine.refresh_due());
    // Run out: it ends, and nothing more is due.
    EXPECT_TRUE(engine.refresh_ids(UINT64_MAX));
    EXPECT_FALSE(engine.refresh_due());
    // An id that arrives while a round runs wants another round once this one ends.
    sim.assign_self(sim.create());
    settle(engine);
    ASSERT_TRUE(engine.refresh_due());
    EXPECT_FALSE(engine.refresh_ids([] { return true; }));
    sim.assign_self(sim.create());
    settle(engine);
    EXPECT_TRUE(engine.refresh_ids(UINT64_MAX));
    EXPECT_TRUE(engine.refresh_due());
    EXPECT_TRUE(engine.refresh_ids(UINT64_MAX));
    EXPECT_FALSE(engine.refresh_due());
}

TEST(Mirror, VerdictsFollowTheClock) {
    Sim sim;
    FakeClock clock;
    Engine engine(sim, config(sim), clock.clock());
    ASSERT_TRUE(engine.resync(ResyncReason::Startup));
    const int held = sim.named("held"), leaked = sim.named("leaked");
    sim.assign_self(held);
    sim.assign_self(leaked);
    settle(engine);
    // While ids are still being asked for, nothing is judged unheld.
    EXPECT_TRUE(engine.refresh_due());
    engine.discover_mounts();
    engine.refresh_ids(UINT64_MAX);
    EXPECT_FALSE(engine.refresh_due());
    ASSERT_TRUE(engine.discover_processes(SIZE_MAX, false));
    const auto& rows = engine.registry().table(kSelf)->rows;
    EXPECT_EQ(settled_state(engine, kSelf, rows.at(0).entry),
              PeerState::Mounted); // a bind mount only
    // Unmounted but alive (an fd elsewhere holds it): unknown within the grace, then pinned
    // while no fd search has found a holder.
    struct stat st {};
    ASSERT_EQ(::stat((sim.root() / "netns/leaked").c_str(), &st), 0);
    sim.unreach(leaked);
    engine.discover_mounts();
    clock.now += 1'000'000;
    ASSERT_TRUE(engine.discover_processes(SIZE_MAX, false));
    EXPECT_EQ(settled_state(engine, kSelf, rows.at(1).entry), PeerState::Unknown);
    clock.now += 59'000'000;
    EXPECT_EQ(settled_state(engine, kSelf, rows.at(1).entry), PeerState::Unknown);
    clock.now += 1'000'001;
    // Past the grace, but no fd search has walked every process since it was unheld: not
    // pinned yet. One that finds nothing makes it so.
    EXPECT_EQ(settled_state(engine, kSelf, rows.at(1).entry), PeerState::Unknown);
    search_fds(engine, sim);
    EXPECT_EQ(settled_state(engine, kSelf, rows.at(1).entry), PeerState::Pinned);
    EXPECT_EQ(settled_state(engine, kSelf, rows.at(0).entry), PeerState::Mounted);
    auto counts = (engine.settle(), engine.state_counts());
    EXPECT_EQ(counts[static_cast<std::size_t>(PeerState::Pinned)], 1u);
    // A process keeps it open: the next search (a minute later) names it, and it is fd-held.
    fs::create_directories(sim.root() / "proc/4242/fd");
    write(sim.root() / "proc/4242/comm", "keeper\n");
    fs::create_symlink("net:[" + std::to_string(st.st_ino) + "]", sim.root() / "proc/4242/fd/7");
    clock.now += 60'000'000;
    ASSERT_TRUE(engine.discover_processes(SIZE_MAX, false));
    search_fds(engine, sim);
    EXPECT_EQ(settled_state(engine, kSelf, rows.at(1).entry), PeerState::FdHeld);
    EXPECT_EQ(*engine.peer(1).holders.fds, (std::vector<registry::FdHolder>{{4242, "keeper", 7}}));
    EXPECT_TRUE(engine.peer(0).holders.fds->empty());
    // The same unheld peers are searched for again only a minute after the last search.
    ASSERT_TRUE(engine.discover_processes(SIZE_MAX, false));
    EXPECT_FALSE(engine.fds_due());
    // Closed: the next search finds nothing; pinned again (the grace has long passed).
    fs::remove(sim.root() / "proc/4242/fd/7");
    clock.now += 60'000'000;
    ASSERT_TRUE(engine.discover_processes(SIZE_MAX, false));
    search_fds(engine, sim);
    EXPECT_EQ(settled_state(engine, kSelf, rows.at(1).entry), PeerState::Pinned);
    EXPECT_TRUE(engine.peer(1).holders.fds->empty());
    // A namespace mounted after the last look at the mounts (rescans back off under load) is
    // not judged by passes that could not have seen its mount, however long they take.
    sim.assign_self(sim.named("late"));
    settle(engine);
    engine.refresh_ids(UINT64_MAX);
    for (int pass = 0; pass < 3; ++pass) {
        clock.now += 61'000'000;
        ASSERT_TRUE(engine.discover_processes(SIZE_MAX, false));
    }
    EXPECT_EQ(settled_state(engine, kSelf, rows.at(2).entry), PeerState::Unknown);
    engine.discover_mounts();
    EXPECT_EQ(settled_state(engine, kSelf, rows.at(2).entry), PeerState::Mounted);
    // A CNI-style mount with no process: mounted, then stale after the grace.
    sim.assign_self(sim.named("cni-1a2b"));
    settle(engine);
    engine.discover_mounts();
    engine.refresh_ids(UINT64_MAX);
    ASSERT_TRUE(engine.discover_processes(SIZE_MAX, false));
    EXPECT_EQ(settled_state(engine, kSelf, rows.at(3).entry), PeerState::Mounted);
    clock.now += 60'000'000;
    EXPECT_EQ(settled_state(engine, kSelf, rows.at(3).entry), PeerState::StaleMount);
    EXPECT_EQ(settled_state(engine, kSelf, rows.at(2).entry),
              PeerState::Mounted); // not on a CNI path
    counts = (engine.settle(), engine.state_counts());
    EXPECT_EQ(counts[static_cast<std::size_t>(PeerState::StaleMount)], 1u);
    EXPECT_EQ(counts[static_cast<std::size_t>(PeerState::Mounted)], 2u);
}

TEST(Mirror, HostScopeObserversAppearAndDie) {
    Sim sim;
    sim.target_cut = 901;
    Engine engine(sim, config(sim, true));
    ASSERT_TRUE(engine.resync(ResyncReason::Startup));
    std::vector<int> peers;
    for (int i = 0; i < 1000; ++i) {
        peers.push_back(sim.create());
        sim.assign_self(peers.back());
    }
    const int a = sim.named("a"), b = sim.named("b");
    sim.assign_self(a);
    sim.assign_self(b);
    for (int p : peers)
        sim.assign_foreign(a, p); // past one TARGET dump: the rest by asking
    sim.assign_foreign(b, a);
    settle(engine);
    EXPECT_EQ(diff(tables_of(engine.registry()), sim.tables(true)), "");
    sim.overrun();
    settle(engine); // the whole graph read again, a's table past its cut
    EXPECT_EQ(diff(tables_of(engine.registry()), sim.tables(true)), "");
    // Observer a dies with peers: its table goes, and b's row for it.
    sim.kill({a, peers[0], peers[1]});
    settle(engine);
    EXPECT_EQ(diff(tables_of(engine.registry()), sim.tables(true)), "");
    EXPECT_EQ(engine.registry().table(*sim.self_id(b))->rows.size(), 0u);
}

// Host scope: another table's row for our own namespace carries our identity and is held (by
// us), though self has no id for itself to name it by; a row for a peer self has no id for
// stays unknown.
TEST(Mirror, HostScopeRowsNamingUs) {
    Sim sim;
    FakeClock clock;
    Engine engine(sim, config(sim, true), clock.clock());
    const int a = sim.named("a"), b = sim.named("b"), hidden = sim.create();
    sim.assign_self(a);
    sim.assign_self(b);
    sim.assign_foreign(a, hidden);    // a's id 0: a peer self has no id for
    sim.assign_foreign(a, sim.own()); // a's id 1: us
    ASSERT_TRUE(engine.resync(ResyncReason::Startup));
    sim.assign_foreign(b, sim.own()); // b's id 0, learned from an event
    settle(engine);
    ASSERT_EQ(diff(tables_of(engine.registry()), sim.tables(true)), "");
    const auto row = [&](int o, Nsid k) {
        return engine.registry().table(*sim.self_id(o))->rows.at(k).entry;
    };
    for (const auto& [o, k] : {std::pair{a, 1}, std::pair{b, 0}}) {
        const auto shown = engine.view(*sim.self_id(o), row(o, k));
        EXPECT_EQ(shown.peer.cookie, sim.ns.at(sim.own()).cookie) << o;
        EXPECT_TRUE(shown.peer.inode.has_value());
        EXPECT_EQ(settled_state(engine, *sim.self_id(o), row(o, k)), PeerState::Active);
    }
    const auto other = engine.view(*sim.self_id(a), row(a, 0));
    EXPECT_FALSE(other.peer.cookie.has_value());
    EXPECT_EQ(settled_state(engine, *sim.self_id(a), row(a, 0)), PeerState::Unknown);
    // b forgets us and gives the id to the hidden peer: the row is no longer ours.
    sim.foreign[b].clear();
    sim.queue.push_back({registry::Op::Kind::Del, *sim.self_id(b), 0, std::nullopt});
    sim.assign_foreign(b, hidden);
    settle(engine);
    EXPECT_FALSE(engine.view(*sim.self_id(b), row(b, 0)).peer.cookie.has_value());
    EXPECT_EQ(settled_state(engine, *sim.self_id(b), row(b, 0)), PeerState::Unknown);
}

// Seeded random churn: creations (named, with a process, hidden), auto and explicit ids,
// cross-table ids, bursts of deaths racing reuse, overruns, discovery, periodic resyncs.
void churn(std::uint32_t seed, bool host) {
    SCOPED_TRACE("seed " + std::to_string(seed) + (host ? " host" : " self"));
    Sim sim;
    std::mt19937 rng(seed);
    sim.cut = std::uniform_int_distribution<std::size_t>(8, 64)(rng);
    sim.target_cut = sim.cut;
    FakeClock clock;
    Engine engine(sim, config(sim, host), clock.clock());
    Replay replay; // a watcher from the start
    ASSERT_TRUE(engine.resync(ResyncReason::Startup));
    Churn churn{sim, rng, {}};
    for (int step = 0; step < 400; ++step) {
        clock.now += 10'000;
        const int action = churn.roll(100);
        if (action < 35) {
            churn.create(step, true);
        } else if (action < 45 && churn.alive.size() >= 2) {
            churn.link();
        } else if (action < 60 && !churn.alive.empty()) {
            churn.kill_some();
        } else if (action < 66) {
            sim.overrun();
        } else if (action < 72) {
            engine.discover_mounts();
        } else if (action < 76) {
            engine.discover_processes(SIZE_MAX, false);
        } else if (action < 78) {
            engine.refresh_ids(UINT64_MAX);
        } else if (action < 79) {
            ASSERT_TRUE(engine.resync(ResyncReason::Periodic));
        } else {
            settle(engine);
            ASSERT_EQ(diff(tables_of(engine.registry()), sim.tables(host)), "") << "step " << step;
            discover(engine);
            settle(engine);
            ASSERT_EQ(diff(tables_of(engine.registry()), sim.tables(host)), "") << "step " << step;
            expect_identities(sim, engine);
        }
        // Whatever the step, the changes sent so far, replayed, are what List shows.
        ASSERT_EQ(replay.diff(engine), "") << "step " << step;
    }
    settle(engine);
    discover(engine);
    EXPECT_EQ(diff(tables_of(engine.registry()), sim.tables(host)), "");
    expect_identities(sim, engine);
    EXPECT_EQ(replay.diff(engine), "");
    EXPECT_GT(replay.updates, 0u);
}

TEST(Mirror, RandomChurnSelf) {
    for (std::uint32_t seed = 1; seed <= 30; ++seed)
        churn(seed, false);
}

TEST(Mirror, RandomChurnHost) {
    for (std::uint32_t seed = 1; seed <= 30; ++seed)
        churn(seed, true);
}

} // namespace
} // namespace nsidd::mirror
