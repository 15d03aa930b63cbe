// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/leak_reports.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "daemon/journal.hpp"

namespace nsidd::daemon {

namespace {

// The journal fields a log pipeline routes a leak on.
std::vector<std::string> leak_fields(registry::Nsid nsid, const registry::Identity& p,
                                     const char* state) {
    std::vector<std::string> f{"NSID=" + std::to_string(nsid), std::string("STATE=") + state};
    if (p.cookie)
        f.push_back("COOKIE=" + std::to_string(*p.cookie));
    if (!p.holders.fds->empty()) {
        f.push_back("HOLDER_PID=" + std::to_string(p.holders.fds->front().pid));
        f.push_back("HOLDER_COMM=" + p.holders.fds->front().comm);
    }
    for (const auto& m : p.holders.mounts)
        f.push_back(fmt::format("MOUNT_PATH={}", m));
    for (const auto& m : p.holders.other_mounts)
        f.push_back(fmt::format("MOUNT_PATH={}", m));
    if (p.owner) {
        if (!p.owner->unit.empty())
            f.push_back("UNIT=" + p.owner->unit);
        if (!p.owner->runtime.empty())
            f.push_back("RUNTIME=" + p.owner->runtime);
        if (!p.owner->container.empty())
            f.push_back("CONTAINER=" + p.owner->container);
        if (!p.owner->sandbox.empty())
            f.push_back("SANDBOX=" + p.owner->sandbox);
        if (!p.owner->pod_uid.empty())
            f.push_back("POD_UID=" + p.owner->pod_uid);
    }
    return f;
}

std::string leak_text(registry::Nsid nsid, const registry::Identity& p, mirror::PeerState s,
                      double grace) {
    const auto& had = p.names.empty() ? p.former_names : p.names;
    const std::string id =
        fmt::format("Peer namespace nsid {} ({}cookie {}, inode {})", nsid,
                    had.empty() ? "" : fmt::format("was {}, ", fmt::join(had, ",")),
                    p.cookie ? std::to_string(*p.cookie) : "unknown",
                    p.inode ? std::to_string(*p.inode) : "unknown");
    switch (s) {
    case mirror::PeerState::StaleMount:
        return fmt::format("{} is held only by the bind mount {} for {} s or more (a stale "
                           "{} mount{}: nsidctl leaks says what frees it)",
                           id, fmt::join(p.holders.mounts, ","), grace,
                           p.owner && !p.owner->runtime.empty() ? p.owner->runtime : "runtime",
                           p.owner && !p.owner->container.empty()
                               ? " of container " + p.owner->container
                               : std::string());
    case mirror::PeerState::FdHeld:
        return fmt::format(
            "{} is held only by {} of pid {} ({}), fd {}: that process keeps "
            "it alive",
            id, p.holders.fds->front().socket ? "a socket created inside it" : "an fd",
            p.holders.fds->front().pid, p.holders.fds->front().comm, p.holders.fds->front().fd);
    default:
        return fmt::format("{} has had no process, no bind mount and no fd holding it for {} s "
                           "or more: the kernel (a socket, a device) keeps it alive",
                           id, grace);
    }
}

} // namespace

void LeakReports::report(const mirror::Engine& engine, double grace) {
    // Each leak once (by id, first-seen time and state: ids are reused), the first few in full.
    std::set<std::tuple<registry::Nsid, std::uint64_t, mirror::PeerState>> now;
    std::size_t full = 0, more = 0;
    for (const auto& [nsid, row] : engine.registry().table(registry::kSelf)->rows) {
        const auto state = engine.state(registry::kSelf, row.entry);
        if (!is_leak(state))
            continue;
        const auto key = std::make_tuple(nsid, row.entry.since_usec, state);
        now.insert(key);
        if (told_.count(key))
            continue;
        if (full == kToLog) {
            ++more;
            continue;
        }
        ++full;
        const auto& p = engine.peer(nsid);
        const auto fields = leak_fields(nsid, p, mirror::to_string(state));
        const auto notable = state == mirror::PeerState::StaleMount ? Notable::StaleMount
                             : state == mirror::PeerState::FdHeld   ? Notable::FdHeld
                                                                    : Notable::Pinned;
        log_notable(notable, spdlog::level::warn, leak_text(nsid, p, state, grace), fields);
    }
    if (more > 0)
        log_notable(
            Notable::Pinned, spdlog::level::warn,
            fmt::format("{} more peer namespaces leaking (nsidctl leaks shows them)", more));
    told_ = std::move(now);
}

} // namespace nsidd::daemon
