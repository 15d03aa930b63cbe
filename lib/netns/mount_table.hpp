// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "netns/mountinfo.hpp"

namespace nsidd::netns {

/// The nsfs mounts of network namespaces in our mount namespace, reread on each change of the
/// mount table. Where the kernel has listmount(2) and statmount(2) (Linux 6.8+), a reread lists
/// the mount ids and asks only about the new ones: no text is formatted or parsed for the
/// thousands of mounts that did not change (docs/design.md, "Mount table"). Elsewhere, and for
/// a sandboxed /proc, it reparses mountinfo.
class MountTable {
public:
    /// `mountinfo`: /proc/self/mountinfo or a test's copy. `listmount`: use the syscalls when
    /// the kernel has them (only meaningful for the real /proc: they list the real table).
    MountTable(std::string mountinfo, bool listmount);

    /// Rereads the table. Returns false when it could not be read (mounts() stays as it was).
    bool refresh();
    /// Whether the last refresh() found the nsfs mounts changed.
    bool changed() const noexcept { return changed_; }
    /// The nsfs mounts, in mount order (a mount over another comes after it).
    const std::vector<NsfsMount>& mounts() const noexcept { return mounts_; }
    /// Whether refresh() uses listmount(2)/statmount(2).
    bool uses_listmount() const noexcept { return listmount_; }

private:
    bool refresh_listmount();
    bool refresh_mountinfo();
    bool list_ids();
    bool stat_id(std::uint64_t id, std::optional<NsfsMount>& out);

    std::string mountinfo_;
    bool listmount_;
    int checks_left_;
    bool changed_ = false;
    std::vector<NsfsMount> mounts_;
    // listmount: mount id -> its nsfs mount, or none (another file system).
    std::unordered_map<std::uint64_t, std::optional<NsfsMount>> known_;
    std::vector<std::uint64_t> ids_;
    std::vector<char> stat_buf_;
};

} // namespace nsidd::netns
