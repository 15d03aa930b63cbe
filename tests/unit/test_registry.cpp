// SPDX-License-Identifier: LGPL-2.1-or-later
// The registry against a simulated kernel: random namespace churn produces the event stream the
// kernel would send (bursts of deaths, immediate id reuse, NEW k overtaking DEL k, cross-table
// ids, overruns), delivered in random batches. Whenever every event has been delivered, the
// mirror must equal the kernel's tables and have recorded every death exactly once.
#include "registry/registry.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include <gtest/gtest.h>

#include "model_ids.hpp"

#include "naive_purge.hpp"

namespace nsidd::registry {
namespace {

using Peer = int;

class TableModel {
public:
    explicit TableModel(std::uint32_t seed) : rng_(seed) {}

    std::map<Nsid, Peer> self;                    // self's table
    std::map<Peer, std::map<Nsid, Peer>> foreign; // other namespaces' tables
    std::deque<Op> queue;                         // sent, not yet delivered
    std::set<Peer> alive;
    std::uint64_t deaths_with_self_id = 0;

    std::optional<Nsid> self_id(Peer p) const {
        for (const auto& [k, v] : self)
            if (v == p)
                return k;
        return std::nullopt;
    }
    bool is_assigned(Observer o, Nsid k) const {
        if (o == kSelf)
            return self.count(k) != 0;
        auto obs = self.find(o);
        if (obs == self.end())
            return false;
        auto t = foreign.find(obs->second);
        return t != foreign.end() && t->second.count(k) != 0;
    }

    Peer create() {
        alive.insert(next_);
        return next_++;
    }
    void assign_self(Peer p, std::optional<Nsid> explicit_id) {
        const Nsid k = explicit_id ? *explicit_id : test::lowest_free(self);
        if (self.count(k) || self_id(p))
            return; // EEXIST
        self[k] = p;
        queue.push_back(Op{Op::Kind::New, kSelf, k, k});
    }
    // Observer `o` (which has a self id) gives `p` (which has one too) the lowest free id.
    void assign_foreign(Peer o, Peer p) {
        auto& t = foreign[o];
        for (const auto& [id, q] : t)
            if (q == p)
                return;
        const Nsid k = test::lowest_free(t);
        t[k] = p;
        queue.push_back(Op{Op::Kind::New, *self_id(o), k, *self_id(p)});
    }

    // One cleanup_net run: `dying` die together. Per dying peer: drop self's id (maybe racing
    // with an auto allocation that reuses it and notifies first), then other survivors' ids.
    void kill(const std::vector<Peer>& dying, double race) {
        std::set<Peer> d(dying.begin(), dying.end());
        for (Peer p : dying)
            alive.erase(p);
        for (Peer p : dying) {
            if (auto k = self_id(p)) {
                self.erase(*k);
                ++deaths_with_self_id;
                if (std::bernoulli_distribution(race)(rng_)) {
                    const Peer fresh = create();
                    assign_self(fresh, std::nullopt); // NEW k may come before DEL k
                }
                queue.push_back(Op{Op::Kind::Del, kSelf, *k, *k});
            }
            for (auto& [o, table] : foreign) {
                if (d.count(o))
                    continue;
                for (auto it = table.begin(); it != table.end();) {
                    if (it->second == p) {
                        if (auto oid = self_id(o))
                            queue.push_back(Op{Op::Kind::Del, *oid, it->first, std::nullopt});
                        it = table.erase(it);
                    } else {
                        ++it;
                    }
                }
            }
        }
        // A dying namespace's own table vanishes without a word.
        for (Peer p : dying)
            foreign.erase(p);
    }

    std::mt19937& rng() { return rng_; }

private:
    std::mt19937 rng_;
    Peer next_ = 1;
};

// The registry's view, as plain maps: observer -> (nsid -> self id of the peer).
std::map<Observer, std::map<Nsid, Nsid>> view(const Registry& r) {
    std::map<Observer, std::map<Nsid, Nsid>> out;
    for (const auto& [o, t] : r.tables())
        for (const auto& [k, row] : t.rows)
            out[o][k] = row.entry.current_nsid.value_or(-1);
    return out;
}

std::map<Observer, std::map<Nsid, Nsid>> view(const TableModel& k) {
    std::map<Observer, std::map<Nsid, Nsid>> out;
    for (const auto& [id, p] : k.self)
        out[kSelf][id] = id;
    for (const auto& [o, t] : k.foreign) {
        auto oid = k.self_id(o);
        if (!oid)
            continue;
        for (const auto& [id, p] : t)
            out[*oid][id] = k.self_id(p).value_or(-1);
    }
    return out;
}

void deliver(TableModel& k, Registry& r, std::size_t n, bool reconcile, std::uint64_t now) {
    Batch b;
    b.now_usec = now;
    b.reconcile = reconcile;
    for (std::size_t i = 0; i < n && !k.queue.empty(); ++i) {
        b.ops.push_back(k.queue.front());
        k.queue.pop_front();
    }
    r.apply(b, [&k](Observer o, Nsid id) { return k.is_assigned(o, id); });
}

std::vector<Entry> truth_of(const TableModel& k, Observer o) {
    std::vector<Entry> out;
    const auto tables = view(k);
    const auto t = tables.find(o);
    if (t == tables.end())
        return out;
    for (const auto& [id, cur] : t->second)
        out.push_back(Entry{id, cur, Source::Resync, 0});
    return out;
}

struct RunStats {
    std::size_t ops = 0;
    std::size_t checks = 0;
};

RunStats run(std::uint32_t seed, std::size_t steps, bool overruns) {
    TableModel k(seed);
    Registry r(64);
    auto& rng = k.rng();
    auto pick = [&](const auto& set) {
        auto it = set.begin();
        std::advance(it, std::uniform_int_distribution<std::size_t>(0, set.size() - 1)(rng));
        return it;
    };
    RunStats stats;
    std::uint64_t now = 1;
    bool synced = true; // registry matches the kernel except for queued events
    for (std::size_t step = 0; step < steps; ++step) {
        ++now;
        const int action = std::uniform_int_distribution<int>(0, 99)(rng);
        if (action < 30) {
            k.assign_self(k.create(), std::nullopt);
        } else if (action < 35) {
            k.assign_self(k.create(), std::uniform_int_distribution<Nsid>(0, 100000)(rng));
        } else if (action < 50 && k.self.size() >= 2) {
            const Peer o = pick(k.self)->second, p = pick(k.self)->second;
            if (o != p)
                k.assign_foreign(o, p);
        } else if (action < 62 && !k.alive.empty()) {
            // A burst: several namespaces die in one cleanup run.
            std::vector<Peer> dying;
            const auto n = std::uniform_int_distribution<std::size_t>(1, 12)(rng);
            for (std::size_t i = 0; i < n && !k.alive.empty(); ++i) {
                const Peer p = *pick(k.alive);
                if (std::find(dying.begin(), dying.end(), p) == dying.end())
                    dying.push_back(p);
            }
            k.kill(dying, 0.3);
        } else if (action < 90) {
            const auto n = std::uniform_int_distribution<std::size_t>(1, 40)(rng);
            stats.ops += std::min(n, k.queue.size());
            deliver(k, r, n, false, now);
        } else if (action < 95 && overruns) {
            // Overrun: the newest events are lost and the daemon discards what it read, since
            // the resync supersedes it; then it reconciles the events queued during the read.
            k.queue.clear();
            for (int attempt = 0;; ++attempt) {
                if (attempt == 3) {
                    ADD_FAILURE() << "reconcile does not settle, seed " << seed;
                    return stats;
                }
                auto observers = view(k);
                observers[kSelf];
                std::vector<Observer> gone;
                for (const auto& [o, t] : r.tables())
                    if (!observers.count(o))
                        gone.push_back(o);
                for (Observer o : gone)
                    r.resync(o, {}, now);
                for (const auto& [o, t] : observers)
                    r.resync(o, truth_of(k, o), now);
                // Changes racing the first snapshot: queued before the reconcile below, older
                // or newer than what was read.
                if (attempt == 0) {
                    for (int i = 0; i < 3; ++i)
                        k.assign_self(k.create(), std::nullopt);
                    if (!k.alive.empty())
                        k.kill({*pick(k.alive)}, 0.5);
                }
                const auto ambiguous = r.counters().ambiguous;
                stats.ops += k.queue.size();
                deliver(k, r, k.queue.size(), true, now);
                if (r.counters().ambiguous == ambiguous)
                    break;
            }
            synced = false; // deaths that raced the snapshot are not all in the history
        }
        if (k.queue.empty()) {
            ++stats.checks;
            auto got = view(r), want = view(k);
            std::erase_if(got, [](const auto& kv) { return kv.second.empty(); });
            std::erase_if(want, [](const auto& kv) { return kv.second.empty(); });
            EXPECT_EQ(got, want) << "seed " << seed << " step " << step;
            if (got != want)
                return stats;
            if (synced) {
                EXPECT_EQ(r.counters().deaths, k.deaths_with_self_id) << "seed " << seed;
            }
        }
    }
    return stats;
}

TEST(Registry, MatchesKernelThroughChurnAndReuse) {
    std::size_t ops = 0, checks = 0;
    for (std::uint32_t seed = 1; seed <= 40; ++seed) {
        const auto s = run(seed, 6000, false);
        ops += s.ops;
        checks += s.checks;
    }
    EXPECT_GT(ops, 100000u);
    EXPECT_GT(checks, 1000u);
}

TEST(Registry, MatchesKernelThroughOverruns) {
    std::size_t ops = 0;
    for (std::uint32_t seed = 100; seed < 140; ++seed)
        ops += run(seed, 6000, true).ops;
    EXPECT_GT(ops, 100000u);
}

// The registry records each death of self's peers; the engine then says what the peer was. Each
// record is described once, the one of the row that left (ids are reused at once).
TEST(Registry, DeathsAreDescribedOnce) {
    Registry r(1024);
    const auto never = [](Observer, Nsid) {
        return false;
    };
    const auto known = [](std::uint64_t cookie, std::uint64_t first_seen) {
        Identity id;
        id.cookie = cookie;
        id.first_seen_usec = first_seen;
        id.names = Strings(std::vector<std::string>{"n" + std::to_string(cookie)});
        return id;
    };
    r.apply(Batch{{{Op::Kind::New, kSelf, 1, 1}, {Op::Kind::New, kSelf, 2, 2}}, 10, false}, never);
    // Peer A (id 1, since 10) dies, B takes id 1 (since 20) and dies in the same batch.
    r.apply(Batch{{{Op::Kind::Del, kSelf, 1, 1}, {Op::Kind::New, kSelf, 1, 1}}, 20, false}, never);
    r.apply(Batch{{{Op::Kind::Del, kSelf, 1, 1}}, 30, false}, never);
    ASSERT_EQ(r.history().size(), 2u);
    EXPECT_FALSE(r.history()[0].peer.cookie);                  // not described yet
    r.describe_death(1, 20, known(22, 25), PeerState::Pinned); // B's: the later row
    r.describe_death(1, 10, known(11, 5), PeerState::Active);  // A's, first seen before it
    r.describe_death(1, 10, known(99, 1), PeerState::Mounted); // described already: nothing
    r.describe_death(2, 10, known(98, 1), PeerState::Mounted); // no such death: nothing
    const auto& a = r.history()[0];
    const auto& b = r.history()[1];
    EXPECT_EQ(a.peer.cookie, 11u);
    EXPECT_EQ(a.since_usec, 5u);
    EXPECT_EQ(a.state, PeerState::Active);
    EXPECT_TRUE(a.peer.names.empty()); // a namespace dies only once its names are gone
    EXPECT_EQ(*a.peer.former_names.begin(), "n11");
    EXPECT_EQ(b.peer.cookie, 22u);
    EXPECT_EQ(b.since_usec, 20u); // the row's, which is earlier than the peer's first seen
    EXPECT_EQ(b.state, PeerState::Pinned);
    EXPECT_EQ(r.history().size(), 2u);
}

TEST(Registry, NewBeforeDelKeepsTheNewPeer) {
    Registry r(1024);
    auto yes = [](Observer, Nsid) -> bool {
        ADD_FAILURE() << "a lossless stream needs no query";
        return true;
    };
    r.apply(Batch{{{Op::Kind::New, kSelf, 0, 0}}, 1, false}, yes);
    // Peer A (id 0) dies; B is given 0 and its NEW overtakes A's DEL.
    auto c =
        r.apply(Batch{{{Op::Kind::New, kSelf, 0, 0}, {Op::Kind::Del, kSelf, 0, 0}}, 2, false}, yes);
    ASSERT_NE(r.table(kSelf)->rows.count(0), 0u);
    EXPECT_EQ(r.counters().deaths, 1u);
    EXPECT_EQ(r.counters().confirmations, 0u);
    EXPECT_EQ(r.history().size(), 1u);
    // B's own DEL later is certain: no query.
    r.apply(Batch{{{Op::Kind::Del, kSelf, 0, 0}}, 3, false}, [](Observer, Nsid) -> bool {
        ADD_FAILURE() << "a certain DEL must not be checked";
        return false;
    });
    EXPECT_TRUE(r.table(kSelf)->rows.empty());
    EXPECT_EQ(r.counters().deaths, 2u);
}

// Every way a row of another table comes to name a peer makes the sweep find it when that peer
// dies: the first NEW, a NEW over a held id (its previous peer died) and a resync. `padding`
// rows that name a survivor make the sweep go through its index by peer; without them it walks
// every row (the dead are named by too many of them).
void sweep_finds_every_row(Nsid padding) {
    SCOPED_TRACE("padding " + std::to_string(padding));
    Registry r(1024);
    const IsAssigned never = [](Observer, Nsid) {
        return false;
    };
    Batch build{{}, 1, false};
    for (Nsid k = 0; k < 6; ++k)
        build.ops.push_back({Op::Kind::New, kSelf, k, k});
    build.ops.push_back({Op::Kind::New, 0, 10, 1}); // observer 0: its id 10 is self's 1
    for (Nsid k = 0; k < padding; ++k)
        build.ops.push_back({Op::Kind::New, 4, k, 5});
    r.apply(build, never);
    // 10 is given to self's 2 (its NEW overtook the DEL of 1's entry there).
    r.apply(Batch{{{Op::Kind::New, 0, 10, 2}}, 2, false}, never);
    r.resync(3, {Entry{20, 2, Source::Resync, 3}}, 3); // observer 3: its id 20 is self's 2
    ASSERT_EQ(r.table(0)->rows.at(10).entry.current_nsid, 2);
    // Self's peer 2 dies: both rows that name it go in the same batch, with no DEL for them.
    const auto c = r.apply(Batch{{{Op::Kind::Del, kSelf, 2, 2}}, 4, false}, never);
    std::set<std::pair<Observer, Nsid>> purged;
    for (const auto& ch : c)
        if (ch.kind == ChangeKind::Purge)
            purged.emplace(ch.observer, ch.entry.nsid);
    EXPECT_EQ(purged, (std::set<std::pair<Observer, Nsid>>{{0, 10}, {3, 20}}));
    EXPECT_TRUE(r.table(0)->rows.empty());
    EXPECT_TRUE(r.table(3)->rows.empty());
    // Self's 2 names a new peer now; observer 0 gets an id for it; it dies too.
    r.apply(Batch{{{Op::Kind::New, kSelf, 2, 2}, {Op::Kind::New, 0, 11, 2}}, 5, false}, never);
    const auto again = r.apply(Batch{{{Op::Kind::Del, kSelf, 2, 2}}, 6, false}, never);
    EXPECT_TRUE(r.table(0)->rows.empty());
    EXPECT_EQ(std::count_if(again.begin(), again.end(),
                            [](const Change& ch) { return ch.kind == ChangeKind::Purge; }),
              1);
    if (padding > 0) {
        ASSERT_NE(r.table(4), nullptr);
        EXPECT_EQ(r.table(4)->rows.size(), static_cast<std::size_t>(padding));
    }
}

TEST(Registry, SweepFindsEveryRowNamingTheDead) {
    sweep_finds_every_row(0);
    sweep_finds_every_row(100);
}

// A dead observer's table leaves whole, and going through the changes gives its rows where it
// left: when its id is reused in the batch (before the new observer's first row) or at the sweep
// (before the rows of other tables purged). Appending keeps each list's order.
TEST(Registry, AVanishedTableIsGivenWhereItLeft) {
    Registry r(16);
    const IsAssigned never = [](Observer, Nsid) {
        return false;
    };
    using K = Op::Kind;
    r.apply(Batch{{{K::New, kSelf, 0, 0},
                   {K::New, kSelf, 1, 1},
                   {K::New, kSelf, 2, 2},
                   {K::New, 0, 4, 0},
                   {K::New, 1, 5, 2},
                   {K::New, 1, 6, 0},
                   {K::New, 2, 7, 0}},
                  1,
                  false},
            never);
    using Seen = std::tuple<ChangeKind, Observer, Nsid>;
    const auto seen = [](const Changes& changes) {
        std::vector<Seen> out;
        for (const auto& c : changes)
            out.emplace_back(c.kind, c.observer, c.entry.nsid);
        EXPECT_EQ(out.size(), changes.size());
        return out;
    };
    // Observer 1 dies and its id goes to a new one at once; observer 2 dies.
    auto first = r.apply(Batch{{{K::Del, kSelf, 1, 1},
                                {K::New, kSelf, 1, 1},
                                {K::New, 1, 9, 0},
                                {K::Del, kSelf, 2, 2}},
                               2,
                               false},
                         never);
    const std::vector<Seen> first_seen{{ChangeKind::Del, kSelf, 1}, {ChangeKind::New, kSelf, 1},
                                       {ChangeKind::Purge, 1, 5},   {ChangeKind::Purge, 1, 6},
                                       {ChangeKind::New, 1, 9},     {ChangeKind::Del, kSelf, 2},
                                       {ChangeKind::Purge, 2, 7}};
    EXPECT_EQ(seen(first), first_seen);
    EXPECT_EQ(first.listed().size(), 4u) << "the vanished tables' rows are not copied";
    // Observer 0 dies: its table, then the row of the new observer 1 that named it.
    auto second = r.apply(Batch{{{K::Del, kSelf, 0, 0}}, 3, false}, never);
    const std::vector<Seen> second_seen{
        {ChangeKind::Del, kSelf, 0}, {ChangeKind::Purge, 0, 4}, {ChangeKind::Purge, 1, 9}};
    EXPECT_EQ(seen(second), second_seen);
    first.append(std::move(second));
    auto both = first_seen;
    both.insert(both.end(), second_seen.begin(), second_seen.end());
    EXPECT_EQ(seen(first), both);
    Changes none;
    none.append(std::move(first)); // (takes them whole)
    EXPECT_EQ(seen(none), both);
    EXPECT_EQ(r.entry_count(), 1u); // self's 1, the new observer
}

TEST(Registry, BurstCostsOneSweepAndNoQueries) {
    Registry r(1024);
    auto never = [](Observer, Nsid) -> bool {
        ADD_FAILURE() << "no query expected";
        return false;
    };
    Batch add{{}, 1, false};
    for (Nsid k = 0; k < 500; ++k)
        add.ops.push_back({Op::Kind::New, kSelf, k, k});
    for (Nsid o = 0; o < 10; ++o)
        for (Nsid k = 0; k < 20; ++k)
            add.ops.push_back({Op::Kind::New, o, k, 100 + k});
    r.apply(add, never);
    const auto sweeps = r.counters().sweeps;
    Batch burst{{}, 2, false};
    for (Nsid k = 0; k < 300; ++k)
        burst.ops.push_back({Op::Kind::Del, kSelf, k, k});
    auto changes = r.apply(burst, never);
    EXPECT_EQ(r.counters().sweeps, sweeps + 1);
    EXPECT_EQ(r.table(kSelf)->rows.size(), 200u);
    // Observers 0..9 died (their tables went) and so did every peer 100..119 they pointed at.
    EXPECT_EQ(r.tables().size(), 1u);
    EXPECT_EQ(r.history().size(), 300u);
    std::size_t purges = 0;
    for (const auto& c : changes)
        purges += c.kind == ChangeKind::Purge;
    EXPECT_EQ(purges, 200u);
}

TEST(Registry, HistoryIsBounded) {
    Registry r(8);
    auto no = [](Observer, Nsid) {
        return false;
    };
    for (int round = 0; round < 5; ++round) {
        Batch b{{}, static_cast<std::uint64_t>(round), false};
        for (Nsid k = 0; k < 10; ++k)
            b.ops.push_back({Op::Kind::New, kSelf, k, k});
        for (Nsid k = 0; k < 10; ++k)
            b.ops.push_back({Op::Kind::Del, kSelf, k, k});
        r.apply(b, no);
    }
    EXPECT_EQ(r.history().size(), 8u);
    EXPECT_EQ(r.counters().deaths, 50u);
}

TEST(Registry, ResyncDiffsAndKeepsFirstSeen) {
    Registry r(1024);
    auto no = [](Observer, Nsid) {
        return false;
    };
    r.apply(Batch{{{Op::Kind::New, kSelf, 1, 1}, {Op::Kind::New, kSelf, 2, 2}}, 10, false}, no);
    const auto changes =
        r.resync(kSelf, {Entry{2, 2, Source::Resync, 99}, Entry{3, 3, Source::Resync, 99}}, 50)
            .all();
    ASSERT_EQ(changes.size(), 2u);
    EXPECT_TRUE(changes[0].removed);
    EXPECT_EQ(changes[0].entry.nsid, 1);
    EXPECT_FALSE(changes[1].removed);
    EXPECT_EQ(changes[1].entry.nsid, 3);
    EXPECT_EQ(r.table(kSelf)->rows.at(2).entry.since_usec, 10u);
    EXPECT_EQ(r.table(kSelf)->rows.at(2).entry.source, Source::Event);
    EXPECT_EQ(r.counters().deaths, 1u);
    EXPECT_TRUE(
        r.resync(kSelf, {Entry{2, 2, Source::Resync, 0}, Entry{3, 3, Source::Resync, 0}}, 60)
            .empty());
}

// `dying` of 200 peers die in one batch; self's ids are `spread` apart. A few dead go through the
// index by peer, many through one walk of every row; ids far apart are looked up by hash, close
// ones in an array.
void sweep_equals_naive_purge(Nsid spread, int dying_count) {
    SCOPED_TRACE("spread " + std::to_string(spread) + ", dying " + std::to_string(dying_count));
    std::mt19937 rng(7);
    for (int round = 0; round < 50; ++round) {
        Registry r(1024);
        auto no = [](Observer, Nsid) {
            return false;
        };
        Batch b{{}, 1, false};
        const Nsid peers = 200;
        const auto any_peer = [&] {
            return std::uniform_int_distribution<Nsid>(0, peers - 1)(rng) * spread;
        };
        for (Nsid k = 0; k < peers; ++k)
            b.ops.push_back({Op::Kind::New, kSelf, k * spread, k * spread});
        for (Nsid o = 0; o < 40; ++o)
            for (Nsid k = 0; k < 30; ++k)
                b.ops.push_back({Op::Kind::New, o * spread, k, any_peer()});
        r.apply(b, no);
        auto expected = testing::naive_tables(r);
        std::set<Nsid> dying;
        Batch burst{{}, 2, false};
        for (int i = 0; i < dying_count; ++i) {
            const Nsid d = any_peer();
            if (dying.insert(d).second)
                burst.ops.push_back({Op::Kind::Del, kSelf, d, d});
        }
        testing::naive_purge(expected, dying);
        r.apply(burst, no);
        EXPECT_EQ(testing::naive_tables(r), expected);
    }
}

TEST(Registry, SweepEqualsNaivePurge) {
    for (const Nsid spread : {1, 1000003})
        for (const int dying : {3, 25, 120})
            sweep_equals_naive_purge(spread, dying);
}

} // namespace
} // namespace nsidd::registry
