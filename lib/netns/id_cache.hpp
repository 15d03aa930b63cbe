// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

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

/// The id-cache file's text: a header line "nsidd-ids 1 BOOT COOKIE", then "COOKIE NSID" lines
/// (sorted by cookie). Pure.
std::string format_id_cache(const IdCacheOrigin& origin, const SavedIds& ids);

/// Parses what format_id_cache() wrote. Rejects the whole text (nullopt) when it is malformed,
/// cut, has more than `max_lines` entries, names a cookie twice, or holds for another boot or
/// observer. Pure.
std::optional<SavedIds> parse_id_cache(std::string_view text, const IdCacheOrigin& origin,
                                       std::size_t max_lines = std::size_t{1} << 22);

} // namespace nsidd::netns
