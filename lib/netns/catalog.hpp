// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <dirent.h>
#include <sys/types.h>

#include "netlink/socket.hpp"
#include "netns/discovery.hpp"
#include "util/unique_fd.hpp"

namespace nsidd::netns {

/// An nsfs mount of a network namespace, from a mountinfo line.
struct NsfsMount {
    std::uint64_t inode = 0; ///< from the mount's root, "net:[INODE]"
    std::string path;        ///< the mount point, unescaped
};

/// The network-namespace nsfs mounts in /proc/PID/mountinfo text. Lines that are not nsfs
/// mounts of a network namespace, or that are malformed, are skipped.
std::vector<NsfsMount> parse_nsfs_mounts(std::string_view mountinfo);

/// One live namespace, as discovery last saw it.
struct Namespace {
    /// NS_GET_ID: never reused within a boot. Where the ioctl is missing, the inode stands in
    /// (then `cookie_is_inode`), which is only unique among live namespaces.
    std::uint64_t cookie = 0;
    bool cookie_is_inode = false;
    std::uint64_t inode = 0;
    std::vector<std::string> names;    ///< bind mounts under the netns directory
    bool mounted = false;              ///< any nsfs bind mount, under the netns directory or not
    std::optional<pid_t> pid;          ///< one process inside it, from the last /proc pass
    std::optional<std::int32_t> nsid;  ///< self's id for it, when it has one
    std::string path;                  ///< where it was last reached
    std::uint64_t first_seen_usec = 0; ///< CLOCK_REALTIME
    std::uint64_t seen_pass = 0;       ///< the last /proc pass that met a process in it
    std::uint64_t asked_round = 0;     ///< the last refresh round that asked for its id
};

/// What discovery did, for status and metrics.
struct CatalogStats {
    std::uint64_t passes = 0;   ///< /proc passes completed
    std::uint64_t opened = 0;   ///< namespace files opened (each closed at once)
    std::uint64_t queried = 0;  ///< GETNSID-by-FD requests
    std::uint64_t assigned = 0; ///< ids given by --assign-ids
    std::uint64_t assign_failures = 0;
};

/// The namespaces reachable from here, keyed by cookie: found through nsfs mounts (all of them at
/// each mount change) and /proc/PID/ns/net (a bounded number of processes per step, so a host with
/// 100k processes is not stalled). Each namespace is opened, asked (NS_GET_ID, and GETNSID by FD
/// for self's id the first time), and closed at once: no fd is kept into a watched namespace.
class Catalog {
public:
    /// `requests` answers GETNSID in self's namespace; `assign_ids` gives every namespace found
    /// without an id one (RTM_NEWNSID, auto), changing the kernel's state.
    Catalog(Roots roots, netlink::RequestSocket& requests, bool assign_ids);

    /// Rereads the nsfs mounts (roots.proc_dir/self/mountinfo). Opens only mounts that are new
    /// (by path and inode) unless `full`: a mounted namespace cannot die, so an unchanged mount
    /// still holds the namespace it held.
    void scan_mounts(std::uint64_t now_usec, bool full);
    /// Abandons the current /proc pass; the next scan_proc() starts a new one.
    void restart_pass();
    bool pass_running() const noexcept { return proc_ != nullptr; }
    /// Walks up to `budget` more /proc entries of the current pass. When the pass ends, drops the
    /// namespaces that neither a process nor a mount held during it, and returns true.
    bool scan_proc(std::size_t budget, std::uint64_t now_usec);
    /// Whether a namespace met for the first time is asked for its id at once (the default).
    /// Needless while every id in self's table is accounted for: a new namespace's id then
    /// arrives as a NEW that no known namespace explains, and refresh_unassigned() finds it.
    void set_asking(bool asking) noexcept { asking_ = asking || assign_ids_; }
    /// Starts a round of asking the namespaces without an id for it again (ids appeared that
    /// no known namespace accounts for).
    void begin_refresh() noexcept { ++round_; }
    /// Asks the namespaces without an id that this round has not asked yet, until the round is
    /// done (returns true) or `deadline_usec` (CLOCK_MONOTONIC) has passed: each such GET costs
    /// the kernel a walk of the whole table, so the caller spreads a large round out.
    /// Newest namespaces first: a fresh id most often belongs to a fresh namespace. After
    /// every few GETs, `enough()` may end the round early (true: every id is explained now).
    bool refresh_unassigned(std::uint64_t deadline_usec = UINT64_MAX,
                            const std::function<bool()>& enough = {});
    /// The namespace is dead (its id was deleted): forget it.
    void forget(std::uint64_t cookie);

    /// The ids of namespaces that have one, as text for a restarted nsidd (import_ids): an id
    /// never changes while its namespace lives and a cookie is never reused within a boot, so
    /// a namespace met again with the same cookie still has the same id, and need not be asked.
    /// Only real cookies are written, with the boot and the observer they hold for.
    std::string export_ids(std::string_view boot_id, std::uint64_t self_cookie) const;
    /// Takes ids written by export_ids() as hints for namespaces met from now on. Rejects the
    /// whole text (returns false, changes nothing) when it is malformed, over `max_lines`, or
    /// from another boot or observer.
    bool import_ids(std::string_view text, std::string_view boot_id, std::uint64_t self_cookie,
                    std::size_t max_lines = 1u << 22);
    /// Bumped whenever a namespace's id is learned or forgotten: export when it moved.
    std::uint64_t ids_version() const noexcept { return ids_version_; }

    const Namespace* by_nsid(std::int32_t nsid) const;
    const std::unordered_map<std::uint64_t, Namespace>& namespaces() const noexcept {
        return namespaces_;
    }
    /// Cookies of namespaces found, changed or given an id since the last call.
    std::vector<std::uint64_t> take_updated();
    /// Our own namespace's cookie (0 when NS_GET_ID is missing).
    std::uint64_t self_cookie() const noexcept { return cookies_ ? self_cookie_ : 0; }
    /// NS_GET_ID worked (false until a namespace was opened, and on kernels without it).
    bool cookies() const noexcept { return cookies_; }
    const CatalogStats& stats() const noexcept { return stats_; }
    /// True once a /proc pass has completed: absence from the catalog then means unheld.
    bool complete() const noexcept { return stats_.passes > 0; }

private:
    // A namespace file met on this scan: opened, its cookie read.
    struct Met {
        UniqueFd fd;
        std::string path;
        std::uint64_t inode = 0;
        std::uint64_t cookie = 0;
        std::optional<pid_t> pid;
    };
    std::optional<Met> meet(const std::string& path, std::optional<pid_t> pid);
    // Records the met namespaces; the new ones are asked for self's id in one batch.
    void learn(std::vector<Met>& met, std::uint64_t now_usec, bool from_proc);
    void set_nsid(Namespace& ns, std::optional<std::int32_t> nsid);
    void drop(std::unordered_map<std::uint64_t, Namespace>::iterator it);

    Roots roots_;
    netlink::RequestSocket& requests_;
    bool assign_ids_;
    bool cookies_ = false;
    bool asking_ = true;
    std::uint64_t self_cookie_ = 0; // our own namespace: never given an id by --assign-ids
    std::unordered_map<std::uint64_t, std::int32_t> hints_; // cookie -> id, from import_ids
    std::uint64_t ids_version_ = 0;
    std::unordered_map<std::uint64_t, Namespace> namespaces_; // by cookie
    std::unordered_map<std::int32_t, std::uint64_t> by_nsid_; // self's id -> cookie
    std::vector<std::uint64_t> updated_;
    // The /proc walk: the open directory and the inodes met in this pass (-> cookie).
    std::unique_ptr<DIR, FnDeleter<closedir>> proc_;
    std::unordered_map<std::uint64_t, std::uint64_t> pass_inodes_;
    // The last mount scan: mount point -> (inode, cookie).
    std::unordered_map<std::string, std::pair<std::uint64_t, std::uint64_t>> mounts_;
    std::uint64_t pass_ = 1;
    std::uint64_t round_ = 1; // refresh rounds
    CatalogStats stats_;
};

} // namespace nsidd::netns
