// SPDX-License-Identifier: LGPL-2.1-or-later
// The cost of what leak forensics adds: one fd search over the real /proc (every process's
// fds, looking for a namespace nobody holds, so nothing ends it early) and the owner parse of
// one /proc/PID/cgroup. bench/holders.py fills the host with processes and fds first.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "netns/fd_scan.hpp"
#include "netns/owner.hpp"

namespace {

// state.range(0): 0 seeks an inode no fd has (readlink of every fd, nothing copied); 1 also
// identifies every namespace held by an fd (every socket copied and asked its namespace).
void BM_FdSearchPass(benchmark::State& state) {
    nsidd::netns::FdScan scan("/proc");
    nsidd::netns::FdSearch search;
    search.inodes = {1}; // an inode no fd has: the whole of /proc is searched
    search.identify = state.range(0) == 1;
    const std::atomic<bool> go{false};
    std::uint64_t entries = 0;
    for (auto _ : state) {
        auto found = scan.run(search, go);
        entries = found.looked_at;
        benchmark::DoNotOptimize(found);
    }
    state.counters["entries"] = static_cast<double>(entries);
    state.counters["ns_per_entry"] =
        benchmark::Counter(static_cast<double>(entries) * static_cast<double>(state.iterations()),
                           benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_FdSearchPass)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_OwnerParse(benchmark::State& state) {
    const std::vector<std::string> texts{
        // cgroup v2, a CRI container in a burstable pod
        "0::/kubepods.slice/kubepods-burstable.slice/"
        "kubepods-burstable-pod9c1d3f2e_6b7a_4c8d_9e0f_1a2b3c4d5e6f.slice/cri-containerd-"
        "4f1c2ab7e3d94c0b8a6e2f7d1c3b5a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b.scope\n",
        // cgroup v1 with 12 controllers, docker's cgroupfs driver
        "12:pids:/docker/4f1c2ab7e3d94c0b8a6e2f7d1c3b5a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\n"
        "11:memory:/docker/4f1c2ab7e3d94c0b8a6e2f7d1c3b5a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\n"
        "10:cpu,cpuacct:/docker/4f1c2ab7e3d94c0b8a6e2f7d1c3b5a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\n"
        "9:blkio:/docker/4f1c2ab7e3d94c0b8a6e2f7d1c3b5a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\n"
        "8:devices:/docker/4f1c2ab7e3d94c0b8a6e2f7d1c3b5a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\n"
        "7:freezer:/docker/4f1c2ab7e3d94c0b8a6e2f7d1c3b5a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\n"
        "6:net_cls,net_prio:/docker/"
        "4f1c2ab7e3d94c0b8a6e2f7d1c3b5a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\n"
        "5:perf_event:/docker/4f1c2ab7e3d94c0b8a6e2f7d1c3b5a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\n"
        "4:hugetlb:/docker/4f1c2ab7e3d94c0b8a6e2f7d1c3b5a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\n"
        "3:cpuset:/docker/4f1c2ab7e3d94c0b8a6e2f7d1c3b5a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\n"
        "2:rdma:/\n"
        "1:name=systemd:/docker/4f1c2ab7e3d94c0b8a6e2f7d1c3b5a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\n"
        "0::/\n",
        // a plain service
        "0::/system.slice/nginx.service\n"};
    const auto& text = texts[static_cast<std::size_t>(state.range(0))];
    for (auto _ : state)
        benchmark::DoNotOptimize(nsidd::netns::parse_cgroup_owner(text));
}
BENCHMARK(BM_OwnerParse)->Arg(0)->Arg(1)->Arg(2);

} // namespace

BENCHMARK_MAIN();
