// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nsidd::netns {

/// An nsfs mount of a network namespace, from a mountinfo line.
struct NsfsMount {
    std::uint64_t inode = 0;    ///< from the mount's root, "net:[INODE]"
    std::string path;           ///< the mount point, unescaped
    std::uint64_t mount_id = 0; ///< the mount's id (mountinfo's first field, fdinfo's mnt_id)
    /// Propagation (mountinfo's optional fields; 0: none): the peer group it is in (shared:N),
    /// and the one it receives mounts and unmounts from (master:N).
    std::uint64_t peer_group = 0;
    std::uint64_t master = 0;
};

/// The inode in an nsfs mount root of a network namespace, "net:[INODE]".
std::optional<std::uint64_t> net_root_inode(std::string_view root);

/// The network-namespace nsfs mounts in /proc/PID/mountinfo text. Lines that are not nsfs
/// mounts of a network namespace, or that are malformed, are skipped. Pure.
std::vector<NsfsMount> parse_nsfs_mounts(std::string_view mountinfo);

} // namespace nsidd::netns
