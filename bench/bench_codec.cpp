// SPDX-License-Identifier: LGPL-2.1-or-later
// Codec throughput on real kernel bytes (tests/data): nsid events as they arrive, and a full
// 32 KiB dump datagram.
#include <fstream>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "netlink/codec.hpp"
#include "test_data.hpp"

namespace {

std::vector<std::byte> load(const std::string& name) {
    return nsidd::testing::load_hex(name);
}

void BM_ParseEvent(benchmark::State& state) {
    const auto bytes = load("event_del");
    for (auto _ : state) {
        auto m = nsidd::netlink::parse_datagram(bytes);
        benchmark::DoNotOptimize(m);
    }
    state.SetItemsProcessed(state.iterations());
}

// 1158 entries, the most one dump datagram holds, from the captured 28-byte entry.
void BM_ParseDumpDatagram(benchmark::State& state) {
    const auto reply = load("dump_reply");
    const std::vector<std::byte> entry(reply.begin(), reply.begin() + 28);
    std::vector<std::byte> datagram;
    for (int i = 0; i < 1158; ++i)
        datagram.insert(datagram.end(), entry.begin(), entry.end());
    for (auto _ : state) {
        auto m = nsidd::netlink::parse_datagram(datagram);
        benchmark::DoNotOptimize(m);
    }
    state.SetItemsProcessed(state.iterations() * 1158);
}

void BM_BuildGet(benchmark::State& state) {
    std::uint32_t seq = 0;
    for (auto _ : state) {
        auto m = nsidd::netlink::build_get(++seq, nsidd::netlink::ByNsid{7}, std::nullopt);
        benchmark::DoNotOptimize(m.data());
    }
    state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_ParseEvent);
BENCHMARK(BM_ParseDumpDatagram);
BENCHMARK(BM_BuildGet);

} // namespace

BENCHMARK_MAIN();
