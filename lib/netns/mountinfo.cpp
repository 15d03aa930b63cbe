// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/mountinfo.hpp"

#include <algorithm>
#include <charconv>

namespace nsidd::netns {
namespace {

// Undoes mountinfo's octal escapes (\040 for a space, \011, \012, \134).
std::string unescape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    const auto octal = [](char c) {
        return c >= '0' && c <= '7';
    };
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() && octal(s[i + 1]) && octal(s[i + 2]) &&
            octal(s[i + 3])) {
            out.push_back(static_cast<char>(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) |
                                            (s[i + 3] - '0')));
            i += 3;
            continue;
        }
        out.push_back(s[i]);
    }
    return out;
}

} // namespace

std::optional<std::uint64_t> net_root_inode(std::string_view root) {
    constexpr std::string_view kPrefix = "net:[";
    if (root.size() <= kPrefix.size() + 1 || root.substr(0, kPrefix.size()) != kPrefix ||
        root.back() != ']')
        return std::nullopt;
    const auto digits = root.substr(kPrefix.size(), root.size() - kPrefix.size() - 1);
    std::uint64_t inode = 0;
    bool ok = digits.size() <= 19;
    for (char c : digits)
        ok = ok && c >= '0' && c <= '9' && ((inode = inode * 10 + (c - '0')), true);
    if (!ok || inode == 0)
        return std::nullopt;
    return inode;
}

std::vector<NsfsMount> parse_nsfs_mounts(std::string_view text) {
    std::vector<NsfsMount> out;
    // Splits off the next space-separated field of `line` (empty when none is left).
    auto field = [](std::string_view& line) {
        while (!line.empty() && line.front() == ' ')
            line.remove_prefix(1);
        const auto sp = std::min(line.find(' '), line.size());
        const auto f = line.substr(0, sp);
        line.remove_prefix(sp);
        return f;
    };
    while (!text.empty()) {
        const auto eol = std::min(text.find('\n'), text.size());
        std::string_view line = text.substr(0, eol);
        text.remove_prefix(std::min(eol + 1, text.size()));
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
        const std::string_view id = field(line);
        field(line);
        field(line);
        const std::string_view root = field(line);
        const std::string_view mount_point = field(line);
        if (field(line).empty()) // options
            continue;
        // Optional fields: shared:N (its peer group), master:N (the group it receives from).
        std::uint64_t group = 0, master = 0;
        std::string_view f;
        while (!(f = field(line)).empty() && f != "-") {
            const auto number = [&f](std::string_view tag, std::uint64_t& out) {
                if (f.starts_with(tag))
                    std::from_chars(f.data() + tag.size(), f.data() + f.size(), out);
            };
            number("shared:", group);
            number("master:", master);
        }
        if (f != "-" || field(line) != "nsfs")
            continue;
        std::uint64_t mount_id = 0;
        if (std::from_chars(id.data(), id.data() + id.size(), mount_id).ec != std::errc())
            continue;
        if (const auto inode = net_root_inode(root))
            out.push_back(NsfsMount{*inode, unescape(mount_point), mount_id, group, master});
    }
    return out;
}

} // namespace nsidd::netns
