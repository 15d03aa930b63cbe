// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "util/owner.hpp"
#include "util/shared.hpp"

namespace nsidd::netns {

/// Self's ids of namespaces, by cookie: what a restarted nsidd may trust without asking the
/// kernel. An id never changes while its namespace lives and a cookie is never reused within a
/// boot (docs/kernel.md, "Identity"), so within one boot and one observer the pair holds.
using SavedIds = std::unordered_map<std::uint64_t, std::int32_t>;

/// What the saved ids hold for: the boot and the observing namespace's cookie.
struct IdCacheOrigin {
    std::string boot_id;
    std::uint64_t self_cookie = 0;
};

/// What the id-cache file holds: the ids, when nsidd first saw each namespace (so that ages and
/// lifetimes survive a restart), and when it was saved (a namespace that is gone at the next
/// start died after that).
struct IdCache {
    SavedIds ids;
    std::unordered_map<std::uint64_t, std::uint64_t> first_seen_usec; ///< by cookie
    std::uint64_t saved_usec = 0;                                     ///< CLOCK_REALTIME
    /// By cookie: the unique id (statmount(2), never reused within a boot) of a mount whose
    /// root is that namespace. A mount's root never changes: where a path still reaches that
    /// mount, it reaches that namespace, and nothing need be opened to know it.
    std::unordered_map<std::uint64_t, std::uint64_t> mount_ids;
    /// By cookie, the evidence a verdict's clock runs from (docs/design.md, "Verdicts from
    /// evidence"), so that a restart neither hides a leak nor restarts its age: since when no
    /// process was inside (mounts held it), and since when nothing visible held it.
    std::unordered_map<std::uint64_t, std::uint64_t> no_process_since_usec;
    std::unordered_map<std::uint64_t, std::uint64_t> unheld_since_usec;
    /// By cookie: whose it was, where known (a leaked namespace has no process left to say).
    std::unordered_map<std::uint64_t, Owner> owners;
    bool operator==(const IdCache&) const = default;
};

/// The id-cache file's text: a header line "nsidd-ids 4 BOOT COOKIE SAVED_USEC", then
/// "COOKIE NSID FIRST_SEEN_USEC MOUNT_ID NO_PROCESS_SINCE_USEC UNHELD_SINCE_USEC OWNER" lines
/// (sorted by cookie; 0: unknown or none; NSID "-": a namespace without an id, kept for its
/// evidence and owner). OWNER is "-" or its five parts (unit, runtime,
/// container, pod_uid, sandbox) joined by '/', each with '%', '/', spaces and control bytes
/// written as %XX. Version 3 files (the first four fields) are read too. Pure.
std::string format_id_cache(const IdCacheOrigin& origin, const IdCache& cache);

/// Parses what format_id_cache() wrote. Rejects the whole text (nullopt) when it is malformed,
/// cut, has more than `max_lines` entries, names a cookie twice, or holds for another boot or
/// observer. Pure.
std::optional<IdCache> parse_id_cache(std::string_view text, const IdCacheOrigin& origin,
                                      std::size_t max_lines = std::size_t{1} << 22);

} // namespace nsidd::netns
