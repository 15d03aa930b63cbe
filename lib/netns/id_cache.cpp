// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/id_cache.hpp"

#include <algorithm>
#include <vector>

namespace nsidd::netns {
namespace {

std::string header(const IdCacheOrigin& origin) {
    return "nsidd-ids 1 " + origin.boot_id + " " + std::to_string(origin.self_cookie);
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

std::string format_id_cache(const IdCacheOrigin& origin, const SavedIds& ids) {
    std::vector<std::pair<std::uint64_t, std::int32_t>> sorted(ids.begin(), ids.end());
    std::sort(sorted.begin(), sorted.end());
    std::string out = header(origin) + "\n";
    for (const auto& [cookie, nsid] : sorted)
        out += std::to_string(cookie) + " " + std::to_string(nsid) + "\n";
    return out;
}

std::optional<SavedIds> parse_id_cache(std::string_view text, const IdCacheOrigin& origin,
                                       std::size_t max_lines) {
    if (origin.boot_id.empty() ||
        next_line(text) != std::optional<std::string_view>(header(origin)))
        return std::nullopt;
    SavedIds ids;
    for (std::size_t n = 0; !text.empty(); ++n) {
        const auto line = next_line(text);
        if (!line || n == max_lines)
            return std::nullopt;
        const auto sp = line->find(' ');
        if (sp == std::string_view::npos)
            return std::nullopt;
        const auto cookie = parse_number(line->substr(0, sp), UINT64_MAX);
        const auto nsid = parse_number(line->substr(sp + 1), INT32_MAX);
        if (!cookie || !nsid || !ids.emplace(*cookie, static_cast<std::int32_t>(*nsid)).second)
            return std::nullopt;
    }
    return ids;
}

} // namespace nsidd::netns
