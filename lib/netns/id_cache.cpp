// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/id_cache.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <unordered_set>
#include <vector>

namespace nsidd::netns {
namespace {

std::string header(const IdCacheOrigin& origin, char version = '4') {
    return std::string("nsidd-ids ") + version + " " + origin.boot_id + " " +
           std::to_string(origin.self_cookie) + " ";
}

constexpr char kHex[] = "0123456789ABCDEF";

void escape_to(std::string& out, const std::string& part) {
    for (const unsigned char c : part) {
        if (c <= ' ' || c == '%' || c == '/' || c == 0x7f) {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
}

std::string format_owner(const Owner* o) {
    if (o == nullptr)
        return "-";
    std::string out;
    for (const auto* part : {&o->unit, &o->runtime, &o->container, &o->pod_uid, &o->sandbox}) {
        if (part != &o->unit)
            out += '/';
        escape_to(out, *part);
    }
    return out;
}

std::optional<std::string> unescape(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        const auto hex = [](char c) -> int {
            const char* at = c != 0 ? std::strchr(kHex, c) : nullptr;
            return at == nullptr ? -1 : static_cast<int>(at - kHex);
        };
        if (i + 2 >= s.size() || hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0)
            return std::nullopt;
        out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
        i += 2;
    }
    return out;
}

// "-", or five '/'-separated escaped parts; nullopt (no owner) for "-", false when malformed.
bool parse_owner(std::string_view text, std::optional<Owner>& out) {
    out.reset();
    if (text == "-")
        return true;
    Owner o;
    std::size_t n = 0;
    for (auto* part : {&o.unit, &o.runtime, &o.container, &o.pod_uid, &o.sandbox}) {
        const auto slash = text.find('/');
        if ((n++ < 4) == (slash == std::string_view::npos))
            return false; // four slashes exactly
        auto value = unescape(text.substr(0, slash));
        if (!value || value->size() > 4096)
            return false;
        *part = std::move(*value);
        text.remove_prefix(slash == std::string_view::npos ? text.size() : slash + 1);
    }
    if (o == Owner{})
        return false; // an owner saying nothing is written "-"
    out = std::move(o);
    return true;
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

// One line's fields into `cache`; false when one is malformed or the cookie came before
// (`cookies`: those read so far).
bool parse_line(const std::array<std::string_view, 7>& field, std::size_t fields, IdCache& cache,
                std::unordered_set<std::uint64_t>& cookies) {
    std::array<std::optional<std::uint64_t>, 6> v;
    const bool no_id = fields == 7 && field[1] == "-"; // a namespace without one
    for (std::size_t i = 0; i < std::min<std::size_t>(fields, 6); ++i)
        v[i] = i == 1 && no_id ? 0 : parse_number(field[i], i == 1 ? INT32_MAX : UINT64_MAX);
    for (std::size_t i = fields; i < 6; ++i)
        v[i] = 0;
    std::optional<Owner> owner;
    if (std::any_of(v.begin(), v.end(), [](const auto& x) { return !x.has_value(); }) ||
        (fields == 7 && !parse_owner(field[6], owner)))
        return false;
    const auto cookie = *v[0];
    if (!cookies.insert(cookie).second)
        return false;
    if (!no_id)
        cache.ids.emplace(cookie, static_cast<std::int32_t>(*v[1]));
    const auto put = [cookie](auto& map, std::uint64_t value) {
        if (value != 0)
            map.emplace(cookie, value);
    };
    put(cache.first_seen_usec, *v[2]);
    put(cache.mount_ids, *v[3]);
    put(cache.no_process_since_usec, *v[4]);
    put(cache.unheld_since_usec, *v[5]);
    if (owner)
        cache.owners.emplace(cookie, std::move(*owner));
    return true;
}

} // namespace

std::string format_id_cache(const IdCacheOrigin& origin, const IdCache& cache) {
    // Every cookie something is kept for, those without an id too.
    std::vector<std::uint64_t> sorted;
    for (const auto& [cookie, nsid] : cache.ids)
        sorted.push_back(cookie);
    const auto add = [&sorted](const auto& map) {
        for (const auto& [cookie, value] : map)
            sorted.push_back(cookie);
    };
    add(cache.first_seen_usec);
    add(cache.mount_ids);
    add(cache.no_process_since_usec);
    add(cache.unheld_since_usec);
    add(cache.owners);
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    std::string out = header(origin) + std::to_string(cache.saved_usec) + "\n";
    const auto number = [](const auto& map, std::uint64_t cookie) {
        const auto it = map.find(cookie);
        return " " + std::to_string(it == map.end() ? 0 : it->second);
    };
    for (const auto cookie : sorted) {
        const auto owner = cache.owners.find(cookie);
        const auto nsid = cache.ids.find(cookie);
        out += std::to_string(cookie) + " " +
               (nsid == cache.ids.end() ? std::string("-") : std::to_string(nsid->second)) +
               number(cache.first_seen_usec, cookie) + number(cache.mount_ids, cookie) +
               number(cache.no_process_since_usec, cookie) +
               number(cache.unheld_since_usec, cookie) + " " +
               format_owner(owner == cache.owners.end() ? nullptr : &owner->second) + "\n";
    }
    return out;
}

std::optional<IdCache> parse_id_cache(std::string_view text, const IdCacheOrigin& origin,
                                      std::size_t max_lines) {
    const auto head = next_line(text);
    if (origin.boot_id.empty() || !head)
        return std::nullopt;
    std::size_t fields_per_line = 7;
    auto prefix = header(origin);
    if (!head->starts_with(prefix)) {
        prefix = header(origin, '3'); // before owners and evidence were kept
        fields_per_line = 4;
        if (!head->starts_with(prefix))
            return std::nullopt;
    }
    IdCache cache;
    const auto saved = parse_number(head->substr(prefix.size()), UINT64_MAX);
    if (!saved)
        return std::nullopt;
    cache.saved_usec = *saved;
    std::unordered_set<std::uint64_t> cookies;
    for (std::size_t n = 0; !text.empty(); ++n) {
        const auto line = next_line(text);
        if (!line || n == max_lines)
            return std::nullopt;
        // Exactly the version's fields, one space apart.
        std::array<std::string_view, 7> field;
        std::size_t fields = 0;
        for (std::string_view rest = *line; fields < fields_per_line; ++fields) {
            const auto sp = rest.find(' ');
            field[fields] = rest.substr(0, sp);
            if (sp == std::string_view::npos) {
                ++fields;
                break;
            }
            rest.remove_prefix(sp + 1);
            if (fields + 1 == fields_per_line)
                return std::nullopt; // a field too many
        }
        if (fields != fields_per_line || !parse_line(field, fields_per_line, cache, cookies))
            return std::nullopt;
    }
    return cache;
}

} // namespace nsidd::netns
