// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <vector>

#include <systemd/sd-event.h>
#include <sys/types.h>

#include "daemon/server.hpp"
#include "netns/fd_scan.hpp"
#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace nsidd::daemon {

/// Runs each fd search (netns::FdScan) in a process of its own, forked for it, and hands its
/// findings to the loop: whatever another user's fd does to the search (a socket copy whose
/// close lingers, a file swapped in under a copy whose close waits on a FUSE server that never
/// answers) holds up that process, never the loop. A search has kBudgetUsec; past it, its
/// process is killed and the search given up. The findings come back over a socket pair as
/// text (netns::encode_found), the namespaces identified as nsfs fds beside it.
class FdSearchRunner {
public:
    /// A search's time.
    static constexpr std::uint64_t kBudgetUsec = 30'000'000;
    /// Search processes killed that have not ended yet (one stuck in a close that nothing
    /// interrupts) beyond which no new search starts.
    static constexpr std::size_t kMaxEnding = 4;

    using Done = std::function<void(netns::FdFound)>;
    using GivenUp = std::function<void(const char* why)>;

    FdSearchRunner(sd_event* event, std::string proc_dir, Done done, GivenUp given_up);
    ~FdSearchRunner();
    FdSearchRunner(const FdSearchRunner&) = delete;
    FdSearchRunner& operator=(const FdSearchRunner&) = delete;

    bool busy() const noexcept { return child_ > 0; }
    /// What the last search that ended cost: wall time and its process's CPU time.
    struct Cost {
        std::uint64_t wall_usec = 0;
        std::uint64_t cpu_usec = 0;
    };
    const Cost& last_cost() const noexcept { return cost_; }
    /// Search processes killed that have not ended yet.
    std::size_t ending() const noexcept { return ending_.size(); }
    /// Forks the search's process. Fails when one is under way, when kMaxEnding killed ones
    /// have not ended, or when the fork fails.
    Result<void> start(const netns::FdSearch& search);

private:
    struct Ending {
        FdSearchRunner* owner = nullptr;
        pid_t pid = 0;
        UniqueFd pidfd;
        EventSource io; // the pidfd turns readable when the process ends
        std::list<Ending>::iterator self;
    };

    [[noreturn]] void run_child(int sock, const netns::FdSearch& search);
    static int on_result(sd_event_source*, int, uint32_t, void* userdata) noexcept;
    static int on_deadline(sd_event_source*, uint64_t, void* userdata) noexcept;
    static int on_ended(sd_event_source*, int, uint32_t, void* userdata) noexcept;
    // Reads what the search process sent; false when it is done with (EOF or an error).
    bool read_result();
    // Ends the search process (SIGKILL) and reaps it, now or when it ends.
    void end_child();

    sd_event* event_;
    std::string proc_dir_;
    Done done_;
    GivenUp given_up_;
    pid_t child_ = 0;
    UniqueFd pidfd_;
    UniqueFd sock_;
    EventSource result_io_;
    EventSource deadline_;
    std::string text_;
    std::vector<UniqueFd> fds_;
    std::uint64_t started_usec_ = 0; // CLOCK_MONOTONIC
    Cost cost_;
    std::list<Ending> ending_;
};

} // namespace nsidd::daemon
