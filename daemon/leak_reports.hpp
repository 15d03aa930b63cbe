// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <tuple>

#include "mirror/engine.hpp"

namespace nsidd::daemon {

/// Tells the journal of each peer newly leaking (stale-mount, fd-held, pinned), once: with
/// fields naming it, its holder and its owner (NSID, STATE, COOKIE, HOLDER_PID, MOUNT_PATH,
/// UNIT, RUNTIME, CONTAINER, ...), the first few in full and the rest counted.
class LeakReports {
public:
    /// Looks at self's rows as last settled; `grace`: --orphan-grace, for the text.
    void report(const mirror::Engine& engine, double grace);

private:
    static constexpr std::size_t kToLog = 10;
    // Leaks told: (nsid, first seen, state) (ids are reused).
    std::set<std::tuple<registry::Nsid, std::uint64_t, mirror::PeerState>> told_;
};

} // namespace nsidd::daemon
