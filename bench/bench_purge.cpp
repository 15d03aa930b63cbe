// SPDX-License-Identifier: LGPL-2.1-or-later
// Purging a burst of dead peers: the registry's one sweep against the naive per-peer scan.
// Arguments: (dying peers, tables, entries per table).
#include <algorithm>
#include <numeric>
#include <random>
#include <set>

#include <benchmark/benchmark.h>

#include "naive_purge.hpp"
#include "registry/registry.hpp"

namespace {

using namespace nsidd::registry;

struct Graph {
    Batch build;
    Batch burst;
    std::set<Nsid> dying;
};

// Self knows `peers` namespaces (ids 0..peers-1); the first `tables` of them are observers
// whose tables hold `entries` ids each, pointing at random peers. `dying` random peers die.
Graph make_graph(std::int64_t dying, std::int64_t tables, std::int64_t entries) {
    const Nsid peers = static_cast<Nsid>(std::max(tables, dying) * 2);
    std::mt19937 rng(42);
    Graph g;
    g.build.now_usec = 1;
    for (Nsid k = 0; k < peers; ++k)
        g.build.ops.push_back({Op::Kind::New, kSelf, k, k});
    for (Nsid o = 0; o < tables; ++o)
        for (Nsid k = 0; k < entries; ++k)
            g.build.ops.push_back(
                {Op::Kind::New, o, k, std::uniform_int_distribution<Nsid>(0, peers - 1)(rng)});
    std::vector<Nsid> all(static_cast<std::size_t>(peers));
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    g.burst.now_usec = 2;
    for (std::int64_t i = 0; i < dying; ++i) {
        g.burst.ops.push_back({Op::Kind::Del, kSelf, all[i], all[i]});
        g.dying.insert(all[i]);
    }
    return g;
}

const IsAssigned kNever = [](Observer, Nsid) {
    return false;
};

// The registry holding the graph, before the deaths.
Registry built(const Graph& g) {
    Registry r(1024);
    r.apply(g.build, kNever);
    return r;
}

void purge_batched(benchmark::State& state, std::int64_t dying, std::int64_t tables,
                   std::int64_t entries) {
    const auto g = make_graph(dying, tables, entries);
    const Registry base = built(g);
    for (auto _ : state) {
        state.PauseTiming();
        Registry r = base;
        state.ResumeTiming();
        auto changes = r.apply(g.burst, kNever);
        benchmark::DoNotOptimize(changes.size());
        state.PauseTiming();
        if (r.counters().sweeps != base.counters().sweeps + 1)
            state.SkipWithError("expected exactly one sweep");
        // One change for each row gone: self's DELs and every row purged (a dead observer's
        // table leaves whole, its rows given as changes when they are read).
        if (changes.size() != base.entry_count() - r.entry_count())
            state.SkipWithError("expected a change for every row gone");
        { auto destroy = std::move(r); }
        state.ResumeTiming();
    }
    state.counters["entries"] = static_cast<double>(base.entry_count());
}

void purge_naive(benchmark::State& state, std::int64_t dying, std::int64_t tables,
                 std::int64_t entries) {
    const auto g = make_graph(dying, tables, entries);
    Registry base(1024);
    base.apply(g.build, kNever);
    // The same tables, rows and self-table DELs as the batched run; only the purge differs.
    for (auto _ : state) {
        state.PauseTiming();
        auto t = base.tables();
        state.ResumeTiming();
        for (Nsid dead : g.dying)
            t[kSelf].rows.erase(dead);
        const auto removed = testing::naive_purge(
            t, g.dying, [](auto& table) -> auto& { return table.rows; });
        benchmark::DoNotOptimize(removed);
        state.PauseTiming();
        { auto destroy = std::move(t); }
        state.ResumeTiming();
    }
    state.counters["entries"] = static_cast<double>(base.entry_count());
}

void BM_PurgeBatched(benchmark::State& state) {
    purge_batched(state, state.range(0), state.range(1), state.range(2));
}

void BM_PurgeNaive(benchmark::State& state) {
    purge_naive(state, state.range(0), state.range(1), state.range(2));
}

void Sizes(benchmark::internal::Benchmark* b) {
    b->Args({10, 100, 64})
        ->Args({100, 100, 64})
        ->Args({100, 1000, 64})
        ->Args({500, 1000, 64})
        ->Args({1000, 1000, 64})
        ->Args({1000, 1000, 16})
        ->Args({2000, 2000, 16})
        ->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_PurgeBatched)->Apply(Sizes);
BENCHMARK(BM_PurgeNaive)->Apply(Sizes);

// Host scope, deaths one per wakeup: 1000 tables x 16 entries, 500 peers dying in 500 batches.
// The sweep visits the rows that name each dead peer (an index by peer); a full sweep per
// batch, as the naive purge of one peer is, walks all 16000 rows 500 times.
void one_per_batch(benchmark::State& state, bool naive) {
    const std::int64_t dying = 500, tables = 1000, entries = 16;
    const auto g = make_graph(dying, tables, entries);
    const Registry base = built(g);
    for (auto _ : state) {
        state.PauseTiming();
        Registry r = base;
        auto t = base.tables();
        state.ResumeTiming();
        std::uint64_t now = 2;
        for (const auto& op : g.burst.ops) {
            if (naive) {
                t[kSelf].rows.erase(op.nsid);
                benchmark::DoNotOptimize(testing::naive_purge(
                    t, std::set<Nsid>{op.nsid}, [](auto& table) -> auto& { return table.rows; }));
            } else {
                benchmark::DoNotOptimize(r.apply(Batch{{op}, ++now, false}, kNever).size());
            }
        }
        state.PauseTiming();
        if (!naive && r.counters().sweeps != base.counters().sweeps + dying)
            state.SkipWithError("expected one sweep per batch");
        { auto destroy = std::move(r); }
        { auto destroy = std::move(t); }
        state.ResumeTiming();
    }
}

void BM_OnePerBatchIndexed(benchmark::State& state) {
    one_per_batch(state, false);
}
void BM_OnePerBatchFullSweep(benchmark::State& state) {
    one_per_batch(state, true);
}
BENCHMARK(BM_OnePerBatchIndexed)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_OnePerBatchFullSweep)->Unit(benchmark::kMillisecond);

// The complexity curve: a host graph of n tables of 16 entries in which n/2 peers die at once.
// The sweep is linear in the entries; the per-peer scan is quadratic (n/2 scans of 16n rows).
template <auto Purge> void BM_Curve(benchmark::State& state) {
    const auto n = state.range(0);
    Purge(state, n / 2, n, 16);
    state.SetComplexityN(n);
}

void Curve(benchmark::internal::Benchmark* b) {
    b->RangeMultiplier(2)->Range(128, 2048)->Unit(benchmark::kMillisecond)->Complexity();
}

BENCHMARK_TEMPLATE(BM_Curve, purge_batched)->Name("BM_CurveBatched")->Apply(Curve);
BENCHMARK_TEMPLATE(BM_Curve, purge_naive)->Name("BM_CurveNaive")->Apply(Curve);

} // namespace

BENCHMARK_MAIN();
