// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <dirent.h>
#include <sys/types.h>

#include "netns/discovery.hpp"
#include "netns/id_cache.hpp"
#include "netns/mountinfo.hpp"
#include "netns/mount_table.hpp"
#include "netns/owner.hpp"
#include "netns/queries.hpp"
#include "util/owner.hpp"
#include "util/flat_map.hpp"
#include "util/strings.hpp"
#include "util/unique_fd.hpp"

namespace nsidd::netns {

/// One live namespace, as discovery last saw it.
struct Namespace {
    // (Fields in an order that leaves no padding: one is kept per live namespace.)
    /// NS_GET_ID: never reused within a boot. Where the ioctl is missing, the inode stands in
    /// (then `cookie_is_inode`), which is only unique among live namespaces.
    std::uint64_t cookie = 0;
    std::uint64_t inode = 0;
    /// Bind mounts under the netns directory, and the names it had there, no longer (sorted;
    /// shared with the registry: changed as copies).
    Strings names, former_names;
    Strings mounts; ///< every mount point that reaches it (sorted)
    /// Bind mounts in other mount namespaces, /proc/PID/root/PATH (the last /proc pass, sorted):
    /// each a holder of its own (a private copy, or the first of a propagation group no mount
    /// of ours is in).
    Strings other_mounts;
    /// The same, with the process (and its owner) whose mount namespace has each (empty when
    /// there is none: one pointer).
    Shared<std::vector<CopyHolder>> copies;
    /// Any nsfs bind mount, under the netns directory or not, here or in another mount
    /// namespace.
    bool mounted() const noexcept { return !mounts.empty() || !other_mounts.empty(); }
    Shared<std::string> comm;                ///< the command name of `pid`
    Shared<Owner> owner;                     ///< from the cgroup of a process met inside it
    std::uint64_t no_process_since_usec = 0; ///< end of the first pass that met none; 0: one
    std::uint64_t first_seen_usec = 0;       ///< CLOCK_REALTIME
    std::optional<pid_t> pid;                ///< one process inside it, from the last /proc pass
    std::optional<std::int32_t> nsid;        ///< self's id for it, when it has one
    std::uint32_t processes = 0;             ///< processes inside it, counted by the last pass
    std::uint32_t pass_processes = 0;        ///< counted so far by the pass under way
    std::uint32_t seen_pass = 0;             ///< the last /proc pass that met a process in it
    std::uint32_t asked_round = 0;           ///< the last refresh round that asked for its id
    /// Copies of its mounts in other mount namespaces that go with a mount named above (the
    /// same propagation group): unmounting that one takes them (the last /proc pass).
    std::uint32_t also_in = 0;
    bool cookie_is_inode = false;
    bool unverified = false; ///< the id came from saved ids, not from the kernel
};

/// What discovery did, for status and metrics.
struct CatalogStats {
    std::uint64_t passes = 0;         ///< /proc passes completed
    std::uint64_t opened = 0;         ///< namespace files opened (each closed at once)
    std::uint64_t by_saved_mount = 0; ///< mount points known by a saved mount id, not opened
    std::uint64_t queried = 0;        ///< ids asked of the kernel (one table walk each)
    std::uint64_t assigned = 0;       ///< ids given by --assign-ids
    std::uint64_t assign_failures = 0;
    std::uint64_t saved_ids_verified = 0; ///< saved ids checked against the kernel
    std::uint64_t saved_ids_rejected = 0; ///< saved ids the kernel contradicted (each dropped)
};

/// The namespaces reachable from here, keyed by cookie: found through nsfs mounts (all of them at
/// each mount change) and /proc/PID/ns/net (a bounded number of processes per step, so a host with
/// 100k processes is not stalled). Each namespace is opened, asked (its cookie, and self's id for
/// it the first time), and closed at once: no fd is kept into a watched namespace.
class Catalog {
public:
    /// `queries` answers for opened namespaces; `assign_ids` gives every namespace found
    /// without an id one, changing the kernel's state.
    Catalog(Roots roots, Queries& queries, bool assign_ids);

    /// Rereads the nsfs mounts (roots.proc_dir/self/mountinfo). Opens only the mount points
    /// whose mounts changed unless `full`: a mounted namespace cannot die, so an unchanged mount
    /// still holds the namespace it held. Costs O(changes), not O(mounts), past the reread.
    void scan_mounts(std::uint64_t now_usec, bool full);
    /// Abandons the current /proc pass; the next scan_proc() starts a new one.
    void restart_pass();
    bool pass_running() const noexcept { return proc_ != nullptr; }
    /// Walks up to `budget` more /proc entries of the current pass. When the pass ends, drops the
    /// namespaces that neither a process nor a mount held during it, and returns true.
    bool scan_proc(std::size_t budget, std::uint64_t now_usec);
    /// Whether a namespace found for the first time is asked for its id at once (the default).
    /// Needless while every id in self's table is accounted for: a new namespace's id then
    /// arrives as a NEW that no known namespace explains, and ask_unassigned() finds it.
    void set_ask_new(bool ask) noexcept { ask_new_ = ask || assign_ids_; }
    /// Starts a round of asking the namespaces without an id for it again (ids appeared that
    /// no known namespace accounts for).
    void begin_round() noexcept { ++round_; }
    /// Asks the namespaces without an id that this round has not asked yet, until the round is
    /// done (returns true) or `out_of_time()` says stop (asked after the first few questions, so
    /// that every call makes progress): each such question costs the kernel a walk of the whole
    /// table, so the caller spreads a large round out. Newest namespaces
    /// first: a fresh id most often belongs to a fresh namespace. After every few questions,
    /// `enough()` may end the round early (true: every id is explained now).
    bool ask_unassigned(const std::function<bool()>& out_of_time = {},
                        const std::function<bool()>& enough = {});
    /// Whether the namespace is still where it was last seen (reach_path() opened again: same
    /// cookie). Asks the kernel nothing.
    bool is_reachable(std::uint64_t cookie);
    /// The namespace is dead (its id was deleted): forget it.
    void forget(std::uint64_t cookie);

    /// Self's ids of the namespaces that have one, by real cookie (for the id cache).
    SavedIds saved_ids() const;
    /// Takes saved ids as hints for namespaces found from now on: such a namespace is not asked.
    /// The hints are dropped when the next /proc pass ends (what it did not meet is gone). The
    /// first few used are checked against the kernel at once, and a few more after each pass
    /// until all were: a saved id the kernel contradicts is replaced by its answer, alone (see
    /// take_distrusted()).
    /// `mounts` (cookie -> unique mount id, from the same cache) spares the first mount scan
    /// an open per mount point: a path that still reaches that mount (statx) reaches that
    /// namespace.
    void use_saved_ids(SavedIds ids,
                       const std::unordered_map<std::uint64_t, std::uint64_t>& mounts);
    /// Takes what the id cache kept of namespaces as found from now on: since when no process
    /// was inside (a namespace the first pass again finds without one keeps that time, so its
    /// verdict's clock runs on), and their owners (kept until a process inside says another).
    /// Dropped when the next /proc pass ends, like the saved ids.
    void use_saved_evidence(std::unordered_map<std::uint64_t, std::uint64_t> no_process_since,
                            std::unordered_map<std::uint64_t, Owner> owners);
    /// For the id cache: by cookie, the unique id of a mount whose root is that namespace
    /// (listmount(2) only).
    std::unordered_map<std::uint64_t, std::uint64_t> saved_mount_ids() const;
    /// Checks up to `n` ids that came from saved ids against the kernel.
    void verify_saved_ids(std::size_t n);
    /// Cookies of namespaces whose id, taken from saved ids found wrong, was forgotten since the
    /// last call: whatever was attached from them is suspect.
    std::vector<std::uint64_t> take_distrusted() { return std::exchange(distrusted_, {}); }
    /// Bumped whenever a namespace's id is learned or forgotten: save when it moved.
    std::uint64_t ids_version() const noexcept { return ids_version_; }

    const Namespace* by_nsid(std::int32_t nsid) const;
    const std::unordered_map<std::uint64_t, Namespace>& namespaces() const noexcept {
        return namespaces_;
    }
    /// Cookies of namespaces found, changed or given an id since the last call.
    std::vector<std::uint64_t> take_changed();
    /// Our own namespace's cookie (0 when NS_GET_ID is missing).
    std::uint64_t self_cookie() const noexcept { return cookies_ ? self_cookie_ : 0; }
    /// Our own namespace's nsfs inode (0 when it could not be opened).
    std::uint64_t self_inode() const noexcept { return self_inode_; }
    const CatalogStats& stats() const noexcept { return stats_; }
    /// Whether the mount table is read with listmount(2)/statmount(2) (else as mountinfo text).
    bool mounts_by_listmount() const noexcept { return mount_table_.uses_listmount(); }
    /// Rereads the netns directory: names there that are no mount point are dangling (a file
    /// left behind when its mount went: `ip netns` lists it, nothing is in it).
    void scan_dangling();
    /// The dangling names the last scan_dangling() found, sorted.
    const std::vector<std::string>& dangling_names() const noexcept { return dangling_; }

private:
    // Namespaces held open at once while their ids are asked: each open fd pins its namespace.
    static constexpr std::size_t kChunk = 128;
    // Saved ids checked against the kernel as soon as they are used.
    static constexpr std::size_t kVerifyAtOnce = 8;
    // A namespace file opened on this scan, its cookie read.
    struct Opened {
        UniqueFd fd;
        std::uint64_t inode = 0;
        std::uint64_t cookie = 0;
        std::optional<pid_t> pid;
    };
    std::optional<Opened> open_ns(const std::string& path, std::optional<pid_t> pid);
    // Opens mount `m` of another mount namespace (whose root is open as `root`) asking no file
    // system anything on the way.
    std::optional<Opened> open_other_mount(int root, const NsfsMount& m);
    // Sets up a namespace met for the first time; takes its id from a saved hint where there
    // is one (then true: no need to ask).
    bool add(Namespace& ns, std::uint64_t cookie, std::uint64_t now_usec);
    // Records the opened namespaces and closes them; new ones are asked for self's id together.
    void record(std::vector<Opened>& opened, std::uint64_t now_usec, bool from_proc);
    // What mount point `path` reaches, known without opening it: a mount the id cache names,
    // of a namespace whose id it holds too. Recorded as found. (inode, cookie), or nullopt.
    std::optional<std::pair<std::uint64_t, std::uint64_t>>
    reach_saved_mount(const std::string& path, std::uint64_t now_usec);
    // Asks self's ids of `ns` (open as `fds`) and records the answers.
    void ask_ids(const std::vector<Namespace*>& ns, const std::vector<int>& fds);
    // --assign-ids: gives each asked namespace still without an id one, then asks again.
    void assign_missing(const std::vector<Namespace*>& asked, const std::vector<int>& fds);
    // The /proc pass is over: drops what neither a process nor a mount held during it.
    void end_pass(std::uint64_t now_usec);
    // Frees what only the pass under way uses.
    void drop_pass_scratch();
    // Reads the nsfs mounts of pid's mount namespace, when it is another one met first now, and
    // records the namespaces only they reach. Returns the work it took, in processes' worth
    // (for the slice's budget).
    std::size_t read_other_mounts(const char* pid, std::uint64_t now_usec);
    // Whether nsfs mount `m` of another mount namespace is a propagated copy (peer group
    // from mountinfo's shared:N/master:N) of one of ours or of one named already: then it is
    // counted in its namespace's also_in, not named.
    bool fold_propagated(const NsfsMount& m);
    void set_nsid(Namespace& ns, std::optional<std::int32_t> nsid);
    // Where the namespace was last seen: a mount point of it here, one in another mount
    // namespace, or a process in it ("" when none is known). Derived, not stored: one path per
    // namespace would be the largest string the catalog holds.
    std::string reach_path(const Namespace& ns) const;
    // Reads the command name and the owner (cgroup) of the namespace's process.
    void describe_process(Namespace& ns);
    void drop(std::unordered_map<std::uint64_t, Namespace>::iterator it);
    // What mount point `path` reaches now: `cookie` (0: nothing). Keeps each namespace's names
    // (under the netns directory) and mounted flag.
    void place(std::string_view path, std::uint64_t inode, std::uint64_t cookie);
    // The name `path` gives its namespace, if it is directly under the netns directory.
    std::optional<std::string_view> name_of(std::string_view path) const;
    // Compares what the kernel said of namespaces whose id came from a hint; false on a
    // mismatch (then each wrong one takes the kernel's answer; the other hints stay).
    bool check_hints(const std::vector<Namespace*>& ns, const std::vector<int>& fds);
    // A saved id was wrong: the namespace takes the kernel's answer, `real`; what was attached
    // from the saved id is suspect.
    void contradict(Namespace& ns, std::optional<std::int32_t> real);

    Roots roots_;
    Queries& queries_;
    bool assign_ids_;
    bool cookies_ = false;
    bool ask_new_ = true;
    std::uint64_t self_cookie_ = 0; // our own namespace: never given an id by --assign-ids
    std::uint64_t self_inode_ = 0;
    SavedIds hints_; // cookie -> id, from a saved id cache
    std::unordered_map<std::uint64_t, std::uint64_t> mount_hints_;      // unique mount id -> cookie
    std::unordered_map<std::uint64_t, std::uint64_t> saved_no_process_; // cookie -> usec
    std::unordered_map<std::uint64_t, Owner> saved_owners_;             // cookie -> owner
    std::vector<std::uint64_t> distrusted_;
    std::uint64_t ids_version_ = 0;
    std::unordered_map<std::uint64_t, Namespace> namespaces_; // by cookie
    // Self's id -> cookie (flat: 16 bytes an id, where a hash node would take 40).
    ByNsid<std::uint64_t> by_nsid_;
    std::unordered_set<std::uint64_t> unassigned_; // cookies of those without an id
    std::vector<std::uint64_t> changed_;
    // The /proc walk: the open directory and the inodes met in this pass (-> cookie).
    std::unique_ptr<DIR, FnDeleter<closedir>> proc_;
    std::unordered_map<std::uint64_t, std::uint64_t> pass_inodes_;
    // Mount namespaces other than ours met in this pass ("mnt:[INODE]"), and the nsfs mounts
    // read from them: namespace inode -> /proc/PID/root/PATH.
    std::unordered_set<std::string> pass_mnt_ns_;
    std::unordered_map<std::uint64_t, std::vector<CopyHolder>> pass_other_mounts_;
    // Propagation in this pass: (inode, peer group) of our own nsfs mounts (the groups they are
    // in and receive from) and of the copies in other mount namespaces named so far; copies
    // that go with one, by namespace inode.
    struct PairHash {
        std::size_t operator()(const std::pair<std::uint64_t, std::uint64_t>& p) const noexcept {
            return std::hash<std::uint64_t>{}(p.first * 0x9e3779b97f4a7c15ull ^ p.second);
        }
    };
    using Groups = std::unordered_set<std::pair<std::uint64_t, std::uint64_t>, PairHash>;
    Groups pass_own_groups_, pass_other_groups_;
    std::unordered_map<std::uint64_t, std::uint32_t> pass_also_in_;
    bool pass_own_groups_read_ = false;
    // Inodes of the namespaces known when the pass first read another mount namespace.
    std::unordered_set<std::uint64_t> pass_known_inodes_;
    std::string own_mnt_ns_;
    // Mount points to open again at the next scan: they could not be opened, or their
    // namespace was dropped while they held it.
    std::vector<Strings> recheck_;
    std::vector<std::string> dangling_;
    MountTable mount_table_;
    std::uint32_t pass_ = 1;  // /proc passes begun (wraps after 2^32: compared only for ==)
    std::uint32_t round_ = 1; // rounds of ask_unassigned()
    CatalogStats stats_;
};

} // namespace nsidd::netns
