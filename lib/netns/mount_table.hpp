// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "netns/mountinfo.hpp"
#include "util/flat_map.hpp"
#include "util/strings.hpp"
#include "util/unique_fd.hpp"

namespace nsidd::netns {

/// Sorts one-path blocks by their path and drops repeats.
void sort_unique_paths(std::vector<Strings>& paths);

/// The nsfs mounts of network namespaces in our mount namespace, reread on each change of the
/// mount table, reporting which mount points changed. Where the kernel has listmount(2) and
/// statmount(2) (Linux 6.8+), a reread lists the mount ids, asks only about the new ones and
/// diffs the sorted lists: no text is formatted or parsed, no map rebuilt, for the thousands of
/// mounts that did not change (docs/design.md, "Mount table"). Elsewhere, and for a sandboxed
/// /proc, it reparses mountinfo.
class MountTable {
public:
    /// `mountinfo`: /proc/self/mountinfo or a test's copy. `listmount`: use the syscalls when
    /// the kernel has them (only meaningful for the real /proc: they list the real table).
    MountTable(std::string mountinfo, bool listmount);

    /// Rereads the table (`full`: lists every mount, never only the new ones). Returns false
    /// when it could not be read (nothing changes).
    bool refresh(bool full = false);
    /// Mount points at which an nsfs mount appeared or went in the last refresh(), each once
    /// and sorted: what is reached through them may have changed. Each is the table's own
    /// one-path block (shared, never a copy of the text). Taken, not kept: the first listing
    /// reports every mount point.
    std::vector<Strings> take_changed_paths() noexcept { return std::exchange(changed_paths_, {}); }
    /// A mount point: how many nsfs mounts of network namespaces are listed there, and what the
    /// catalog last found it reaching. Kept while either is set, so that the catalog still
    /// knows what a mount point reached when its last mount goes (one map for both: a path is
    /// the largest thing kept per mount).
    struct Point {
        std::uint32_t mounts = 0;
        std::uint64_t inode = 0;  ///< reached, as of the catalog's last look
        std::uint64_t cookie = 0; ///< reached (0: nothing)
    };
    /// Mount points by path. A path is kept as a one-string `Strings` block, which the catalog
    /// shares as the mount point list of the namespace it reaches (most have one): the path is
    /// then kept once, and the map's node is 48 bytes. Looked up by string_view.
    struct PathHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view path) const noexcept {
            return std::hash<std::string_view>{}(path);
        }
        std::size_t operator()(const Strings& path) const noexcept { return (*this)(path.front()); }
    };
    struct PathEq {
        using is_transparent = void;
        template <typename A, typename B> bool operator()(const A& a, const B& b) const noexcept {
            return view(a) == view(b);
        }
        static std::string_view view(const Strings& s) noexcept { return s.front(); }
        static std::string_view view(std::string_view s) noexcept { return s; }
    };
    using Paths = std::unordered_map<Strings, Point, PathHash, PathEq>;
    /// The mount points with an nsfs mount (mounts > 0) or a namespace the catalog placed there.
    const Paths& paths() const noexcept { return paths_; }
    /// The one-string block that names `path` in paths() (empty when it is not there).
    Strings path_block(std::string_view path) const;
    /// Whether an nsfs mount is listed at `path`.
    bool mounted(std::string_view path) const;
    /// The point at `path`, or nullptr (for the catalog to read and set what it reaches).
    Point* point(std::string_view path);
    /// Records what `path` reaches now (cookie 0: nothing); forgets a point with neither a
    /// mount nor a namespace.
    void reach(std::string_view path, std::uint64_t inode, std::uint64_t cookie);
    /// If `path` reaches `cookie`, it reaches nothing now (as reach(path, 0, 0)): returns its
    /// block, else an empty one. One lookup.
    Strings unreach(std::string_view path, std::uint64_t cookie);
    /// The nsfs mounts, in no particular order (O(mounts): for checks and tests).
    std::vector<NsfsMount> mounts() const;
    /// An nsfs mount known by its unique mount id (listmount(2) only). `path` is the key of
    /// paths(), valid while the mount is listed.
    struct Listed {
        std::uint64_t inode = 0;
        const Strings* path = nullptr;
    };
    /// The nsfs mounts by unique mount id, ascending (listmount(2) only; empty when reading the
    /// text). Mount ids only grow, so a new mount appends.
    const FlatMap<std::uint64_t, Listed>& by_id() const noexcept { return nsfs_; }
    /// Whether refresh() uses listmount(2)/statmount(2).
    bool uses_listmount() const noexcept { return listmount_; }

private:
    bool refresh_listmount(bool full);
    bool refresh_mountinfo();
    bool list_ids(std::uint64_t after);
    bool list_new();
    std::optional<std::uint32_t> mount_count() const;
    // An nsfs mount as statmount(2) gives it: the path is a view into stat_buf_, valid until
    // the next call (no string is made for a path the table may already hold).
    struct Stat {
        std::uint64_t inode;
        std::string_view path;
    };
    bool stat_id(std::uint64_t id, std::optional<Stat>& out);
    // A new nsfs mount: counted under its mount point (which keeps the one copy of the path).
    void add(std::uint64_t id, std::uint64_t inode, std::string_view path);
    void remove(std::uint64_t id, const Listed& listed);
    void fall_back();

    std::string mountinfo_;
    bool listmount_;
    int checks_left_;
    std::vector<Strings> changed_paths_; // the path blocks of paths_ (no copy of a path)
    Paths paths_;
    // The entry of `path`, made (with no mount and nothing reached) when there was none.
    Paths::iterator point_at(std::string_view path);
    // listmount: every mount id (ascending) and the nsfs mounts among them.
    std::vector<std::uint64_t> ids_, listed_;
    UniqueFd mnt_ns_;    // our mount namespace: NS_MNT_GET_INFO counts its mounts
    int until_full_ = 0; // rereads that may list only the new ids before a full listing
    FlatMap<std::uint64_t, Listed> nsfs_;
    // mountinfo: the nsfs mounts of the last parse, in its order.
    std::vector<NsfsMount> text_;
    std::vector<char> stat_buf_;
};

} // namespace nsidd::netns
