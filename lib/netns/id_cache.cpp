// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/id_cache.hpp"

#include <algorithm>
#include <array>
#include <vector>

namespace nsidd::netns {
namespace {

std::string header(const IdCacheOrigin& origin) {
    return "nsidd-ids 3 " + origin.boot_id + " " + std::to_string(origin.self_cookie) + " ";
}

// A decimal number of at most `max`, digits only.
std::optional<std::uint64_t> parse_number(std::string_view s, std::uint64_t max) {
    if (s.empty() || s.size() > 20)
        return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9')
            return std::nullopt;
        const auto d = static_cast<std::uint64_t>(c - '0');
        if (v > (max - d) / 10)
            return std::nullopt;
        v = v * 10 + d;
    }
    return v;
}

// Splits off the next line; nullopt when no newline ends it (a cut file).
std::optional<std::string_view> next_line(std::string_view& text) {
    const auto eol = text.find('\n');
    if (eol == std::string_view::npos)
        return std::nullopt;
    const auto line = text.substr(0, eol);
    text.remove_prefix(eol + 1);
    return line;
}

} // namespace

std::string format_id_cache(const IdCacheOrigin& origin, const IdCache& cache) {
    std::vector<std::pair<std::uint64_t, std::int32_t>> sorted(cache.ids.begin(), cache.ids.end());
    std::sort(sorted.begin(), sorted.end());
    std::string out = header(origin) + std::to_string(cache.saved_usec) + "\n";
    for (const auto& [cookie, nsid] : sorted) {
        const auto seen = cache.first_seen_usec.find(cookie);
        const auto mount = cache.mount_ids.find(cookie);
        out += std::to_string(cookie) + " " + std::to_string(nsid) + " " +
               std::to_string(seen == cache.first_seen_usec.end() ? 0 : seen->second) + " " +
               std::to_string(mount == cache.mount_ids.end() ? 0 : mount->second) + "\n";
    }
    return out;
}

std::optional<IdCache> parse_id_cache(std::string_view text, const IdCacheOrigin& origin,
                                      std::size_t max_lines) {
    const auto head = next_line(text);
    const auto prefix = header(origin);
    if (origin.boot_id.empty() || !head || !head->starts_with(prefix))
        return std::nullopt;
    IdCache cache;
    const auto saved = parse_number(head->substr(prefix.size()), UINT64_MAX);
    if (!saved)
        return std::nullopt;
    cache.saved_usec = *saved;
    for (std::size_t n = 0; !text.empty(); ++n) {
        const auto line = next_line(text);
        if (!line || n == max_lines)
            return std::nullopt;
        // Exactly four fields, one space apart.
        std::array<std::string_view, 4> field;
        std::size_t fields = 0;
        for (std::string_view rest = *line; fields < field.size(); ++fields) {
            const auto sp = rest.find(' ');
            field[fields] = rest.substr(0, sp);
            if (sp == std::string_view::npos) {
                ++fields;
                break;
            }
            rest.remove_prefix(sp + 1);
            if (fields + 1 == field.size())
                return std::nullopt; // a field too many
        }
        if (fields != field.size())
            return std::nullopt;
        const auto cookie = parse_number(field[0], UINT64_MAX);
        const auto nsid = parse_number(field[1], INT32_MAX);
        const auto seen = parse_number(field[2], UINT64_MAX);
        const auto mount = parse_number(field[3], UINT64_MAX);
        if (!cookie || !nsid || !seen || !mount ||
            !cache.ids.emplace(*cookie, static_cast<std::int32_t>(*nsid)).second)
            return std::nullopt;
        if (*seen != 0)
            cache.first_seen_usec.emplace(*cookie, *seen);
        if (*mount != 0)
            cache.mount_ids.emplace(*cookie, *mount);
    }
    return cache;
}

} // namespace nsidd::netns
