// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <string>
#include <tuple>
#include <vector>

#include "mirror/feed.hpp"
#include "mirror/kernel.hpp"
#include "util/flat_map.hpp"
#include "netns/catalog.hpp"
#include "netns/fd_scan.hpp"
#include "registry/registry.hpp"
#include "util/result.hpp"

namespace nsidd::mirror {

enum class ResyncReason : std::uint8_t { Startup, Overrun, Periodic, Manual, Replaced, Count };
/// "startup", "overrun", "periodic", "manual", "replaced".
const char* to_string(ResyncReason reason) noexcept;

/// What holds a peer alive (see Engine::state and docs/design.md, "Peer states").
using registry::PeerState;
using registry::to_string;

/// The engine's clocks, in microseconds: the wall clock (first-seen, death and verdict times)
/// and a monotonic one (durations, deadlines). Tests pass their own.
struct Clock {
    std::function<std::uint64_t()> realtime;
    std::function<std::uint64_t()> monotonic;
    /// CLOCK_REALTIME and CLOCK_MONOTONIC.
    static Clock system();
};

/// What the engine did, for status and metrics.
struct EngineStats {
    std::array<std::uint64_t, static_cast<std::size_t>(ResyncReason::Count)> resyncs{};
    std::uint64_t resync_failures = 0;
    std::uint64_t last_resync_usec = 0; ///< wall clock of the last good resync
    std::uint64_t last_resync_duration_usec = 0;
    std::uint64_t last_probes = 0;    ///< questions the last table read needed
    bool last_dump_truncated = false; ///< the last dump of self's table may have been cut
    std::uint64_t replaced = 0;       ///< peers a resync found replaced under a kept id
    std::uint64_t resyncs_total() const noexcept;
};

/// What the engine knows of one of self's peers beyond its id: kept once per peer, beside self's
/// table, by self's id (a row without one: nothing known, unknown, unheld).
struct Peer {
    registry::Identity identity;
    /// The state as last shown (a new row starts unknown), and the last one shown other than
    /// unknown (what a row that leaves shows, and its death records).
    PeerState state = PeerState::Unknown;
    PeerState decided = PeerState::Unknown;
    /// A process or a mount held it at the last look (a new row starts without).
    bool held = false;
    /// In a leak state (stale-mount, fd-held, pinned): since when what holds it has been so
    /// (the first look that showed it, across restarts); else 0.
    std::uint64_t leaking_since_usec = 0;
};

/// The engine: keeps the registry equal to the kernel's tables (self's, and in host scope every
/// table self has an id for) and attaches what discovery learns of each peer. It reads tables
/// (dump, then probes where the dump may be cut), applies event batches, reconciles the events
/// queued during a read, tells a replaced peer from a kept one, and renders verdicts on what
/// holds each peer alive. docs/design.md describes the flow and its invariants.
class Engine {
public:
    /// Set from the daemon's options, where the defaults live.
    struct Config {
        netns::Roots roots;
        std::size_t history = 0; ///< deaths kept
        /// Also mirror the table of every namespace that self has an id for.
        bool host = false;
        /// Give every namespace discovery finds without an id one (changes kernel state).
        bool assign_ids = false;
        /// How long a peer may go without a process or a bind mount before it is pinned, and
        /// held by a stale-mount path only before that mount is stale.
        std::uint64_t orphan_grace_usec = 0;
        /// Globs (fnmatch, '*' within one path component) of bind mounts that outlive their
        /// owner when nothing else holds the namespace: CNI's /run/netns/cni-*.
        std::vector<std::string> stale_mount_paths;
        /// The feed's first seq (Feed::Feed).
        std::uint64_t first_seq = 0;
    };

    /// `kernel` must outlive the engine. Nothing is read until resync().
    Engine(Kernel& kernel, Config config, Clock clock = Clock::system());

    /// Reads self's table (dump, and probes when the dump may be cut), applies the difference,
    /// then the events queued meanwhile in reconcile mode. Repeats when events were lost during
    /// the read or a queued event is undecidable; fails with Errc::Timeout after a few tries.
    /// The changes go to the feed; returns how many there were.
    Result<std::size_t> resync(ResyncReason reason);

    /// Result of one batch of events.
    struct Applied {
        std::size_t changes = 0; ///< put in the feed
        std::size_t deaths = 0;  ///< self's peers that died (DEL)
        bool lost = false;       ///< events were lost: resync now
        std::size_t events = 0;  ///< self's events in the batch
    };
    /// Reads every queued event as one batch and applies it, its changes to the feed; after a
    /// loss applies nothing, since the resync the caller then runs supersedes it.
    Applied apply_events();

    /// Rereads the nsfs mounts and attaches what it learned to the rows.
    void discover_mounts();
    /// Ids appeared that no known namespace explains: call refresh_ids() soon. Deferred so
    /// that a burst of NEWs costs one round of questions, not one per batch.
    bool refresh_due() const noexcept { return refresh_due_; }
    /// Discovery found a row's peer replaced under its id (another namespace holds it now):
    /// call resync(ResyncReason::Replaced), which records the death if its events were lost.
    bool resync_due() const noexcept { return resync_due_; }
    /// Asks the namespaces that had no id for it again, until `stop()` says so (checked between
    /// questions, each a walk of the kernel's table); refresh_due() stays true while some are
    /// left to ask, or while ids that arrived during the round want another one. Returns true
    /// when this call ended a round (what is still due then is a new round).
    bool refresh_ids(const std::function<bool()>& stop);
    /// The same, until the monotonic clock passes `deadline_usec`.
    bool refresh_ids(std::uint64_t deadline_usec);
    /// Walks up to `budget` more processes of the current /proc pass. Returns true when the
    /// pass ended (then every verdict was renewed). `mounts`: reread the mount table as the
    /// pass begins (needed only where its changes are not watched).
    bool discover_processes(std::size_t budget, bool mounts);
    /// Whether an fd search is due (and none is under way): some peers had no process and no
    /// mount at the end of the last pass.
    bool fds_due() const noexcept { return fds_due_ && !fd_search_running_; }
    /// What the due search looks for: the unheld peers' inodes and cookies, and, while some
    /// rows have no identity, every namespace held by an fd that no known one is. The engine
    /// then waits for fd_search_done() or fd_search_abandoned().
    netns::FdSearch start_fd_search();
    /// Takes a search's findings: the namespaces it identified are asked for self's id (their
    /// fds closed) and attached to the rows without an identity; each unheld peer's fd holders
    /// (and state) are what it met.
    void fd_search_done(netns::FdFound found);
    /// The search was given up (it overran its time): the next one starts afresh when due.
    void fd_search_abandoned();
    /// Fd copies (pidfd_getfd) the fd searches were refused so far.
    std::uint64_t fd_copies_denied() const noexcept { return fd_copies_denied_; }

    /// The entry as served: a row of self's table with what is known of its peer (`gone`: of a
    /// row that has left the table, what was known when it left). A row of another observer's
    /// table names its peer through current_nsid, so it gets the identity of self's row for that
    /// peer; a row naming our own namespace gets its identity (cookie, inode).
    View view(registry::Observer observer, const registry::Entry& entry,
              const Peer* gone = nullptr) const;
    /// What is known of the peer of self's row `nsid` (empty: nothing, or no such row).
    const registry::Identity& peer(Nsid nsid) const noexcept;
    /// The same, with its state, for each row of self's table that has something known.
    const ByNsid<Peer>& peers() const noexcept { return peers_; }
    /// Active: a process inside held it at the last look (our own namespace is: this
    /// process). Mounted: bind mounts only. StaleMount: bind mounts only, one of them on a
    /// stale-mount path, with no process for longer than the grace period. FdHeld: an fd of
    /// another process is the namespace (the last fd search found it). Pinned: nothing
    /// visible has held it for longer than the grace period: the kernel does (or a socket).
    /// Unknown: not decided yet.
    PeerState state(registry::Observer observer, const registry::Entry& entry) const;
    /// Settles what changed since the last call: self's rows whose identity or state changed,
    /// and in host scope the rows of other tables naming the same peers, go to the feed as
    /// Update changes (returns how many). state() answers what the last call decided, so the
    /// feed, replayed, gives exactly what List shows. Call it after each step that may change a
    /// row (events, discovery, resync) and when next_state_change_usec() passes.
    std::size_t settle();
    /// The wall clock at which a peer's state changes with time alone (a grace period ends), or
    /// 0 when none waits.
    std::uint64_t next_state_change_usec() const noexcept;
    /// Self's peers by state.
    std::array<std::size_t, static_cast<std::size_t>(PeerState::Count)> state_counts() const;
    /// Per state, the first-seen time (wall clock) of self's oldest peer in it; 0: none.
    std::array<std::uint64_t, static_cast<std::size_t>(PeerState::Count)> oldest_since() const;
    /// A network namespace discovery sees (a process, a mount) that has no id in self's table:
    /// in no table, judged all the same (docs/design.md, "Namespaces without an id").
    struct Unlisted {
        registry::Identity peer;
        PeerState state = PeerState::Unknown;
        std::uint64_t leaking_since_usec = 0;
        std::uint64_t first_seen_usec = 0;
    };
    /// Every such namespace as of now, our own excepted. O(namespaces known).
    std::vector<Unlisted> unlisted() const;
    /// Namespaces by state, with an id or not (the rows' states and unlisted()'s), and the
    /// oldest leaking-since of each leak state: for nsidd_leaking_namespaces.
    struct Leaking {
        std::array<std::size_t, static_cast<std::size_t>(PeerState::Count)> count{};
        std::array<std::uint64_t, static_cast<std::size_t>(PeerState::Count)> oldest{};
    };
    Leaking leaking() const;

    /// Takes the ids saved at `path` for this boot and this namespace as hints, so that the
    /// bootstrap need not ask the kernel for them. False when there is no such file or it does
    /// not apply (then nothing changes).
    bool load_ids(const std::string& path);
    /// Saves the ids the catalog knows, with each peer's first-seen time, to `path`
    /// (atomically, mode 0600, its directory made if missing) when they changed since the last
    /// save, or always when `now` (at stop: the save time bounds the deaths a restart finds).
    Result<void> save_ids(const std::string& path, bool now = false);

    /// Self's id for the namespace named `name` under the netns directory, if it has one.
    std::optional<Nsid> nsid_of_name(const std::string& name);

    /// The changes made so far, as shown: the daemon drains it to its Watch clients.
    Feed& feed() noexcept { return feed_; }
    const Feed& feed() const noexcept { return feed_; }
    const registry::Registry& registry() const noexcept { return registry_; }
    const netns::Catalog& catalog() const noexcept { return catalog_; }
    const EngineStats& stats() const noexcept { return stats_; }

private:
    // One batch of queued events, applied (reconcile: during a resync, engine.cpp).
    struct Received {
        registry::Changes changes;
        bool lost = false;
        std::size_t events = 0;
    };
    Received apply_batch(bool reconcile);
    // Puts changes in the feed as shown: each row's view and state as of now (feed.cpp).
    void show(registry::Changes&& changes);

    // Table reading (table.cpp).
    Result<std::vector<registry::Entry>> read_self(registry::Source source);
    std::size_t learn_reachable(std::map<Nsid, registry::Entry>& truth, registry::Source source);
    Result<Nsid> probe_dense(std::map<Nsid, registry::Entry>& truth, Nsid dump_highest,
                             registry::Source source);
    Result<void> probe_sparse(std::map<Nsid, registry::Entry>& truth, Nsid probed_to,
                              registry::Source source);
    const std::map<Nsid, Nsid>* foreign_table(Observer o);
    std::vector<registry::Entry> foreign_entries(Observer o, registry::Source source);
    void resync_foreign(registry::Source source, registry::Changes& changes);
    void read_new_observers(registry::Changes& changes);
    bool is_assigned(Observer observer, Nsid nsid);
    // Rows the snapshot kept whose peer was replaced under the same id (engine.cpp).
    void find_replaced(const std::vector<registry::Entry>& truth, registry::Changes& changes);

    // Identity and verdicts (identity.cpp).
    void identify(const registry::Changes& changes);
    void forget_dead(const registry::Change& change);
    bool unexplained_rows();
    void attach_changed();
    void drop_distrusted();
    void renew_verdicts();
    // The saved ids whose id self's table no longer holds after start-up died while nsidd was
    // down; those whose id it holds are checked when their row's identity is known.
    void find_deaths_while_down();
    void record_death_while_down(Nsid nsid, std::uint64_t cookie);
    // When a peer found unheld now became so: the time the id cache kept for it (unheld before
    // a restart too; used once), else the start of this pass.
    std::uint64_t resumed_unheld(const registry::Identity& peer);
    // Sets a row's identity, noting the row for the next settle().
    void set_peer(Nsid nsid, registry::Identity id);
    // A row whose state may have changed (and whose identity did, when `identity`).
    void touch(Nsid nsid, bool identity = false);
    // The state as of now, since when its evidence has held (leak states only), and when it
    // changes with time alone, if it will (0: it will not).
    struct Verdict {
        PeerState state = PeerState::Unknown;
        std::uint64_t leaking_since = 0;
        std::uint64_t deadline = 0;
    };
    Verdict live_state(Nsid nsid, const registry::Entry& entry, std::uint64_t now) const;
    // Rereads the mount table, noting when.
    void scan_mounts(bool full);
    static registry::Identity identity_of(const netns::Namespace& ns);
    netns::IdCacheOrigin origin();
    // Attaches the namespaces an fd search identified to the rows of their ids; closes their fds.
    // Returns those that have no id in self's table: (inode, cookie).
    std::vector<std::pair<std::uint64_t, std::uint64_t>>
    identify_held(std::vector<netns::HeldNamespace>& found);
    // A complete search's namespaces without an id that only fds hold: what they are now
    // (those not met again are gone).
    void note_held_without_id(const std::vector<std::pair<std::uint64_t, std::uint64_t>>& found,
                              const netns::FdFound& search);
    // At the end of each pass: drops the holders of those that no longer hold them (their fd
    // links read again), and the namespaces none holds.
    void recheck_held_without_id();
    // The owner parsed from /proc/PID/cgroup of a process holding a peer's fd.
    std::optional<Owner> fd_holder_owner(std::int32_t pid) const;
    // Whether a mount-only namespace leaks once no process has been inside for the grace: it
    // was a container's (its owner names one), or one of its mounts, here or in another mount
    // namespace, is on a leak-prone path (a glob's literal prefix first: most mounts fail it,
    // and fnmatch costs ~1 us).
    bool leak_prone(const netns::Namespace& ns) const;
    // Host scope: whether `entry` of `observer`'s table names our own namespace.
    bool names_self(Observer observer, const registry::Entry& entry) const;

    // A row whose peer nothing held at the last look, since when. (A held one says so beside
    // its identity, Peer::held: most are, and a map of them would cost 24 bytes a row.)
    struct Unheld {
        std::uint64_t row_since = 0;    // the row it is about (ids are reused)
        std::uint64_t unheld_since = 0; // wall clock
    };
    // Rebuilt in row order by each renewal; a dead row's is erased with it.
    using UnheldRows = ByNsid<Unheld>;
    // The row's verdict: held (Peer::held; no unheld record kept), or none.
    void judge_held(Nsid nsid, bool held);
    // Calls fn(entry, state, leaking_since) for each row of self's table, in order (the rows
    // and what is known of their peers walked side by side: no lookup per row).
    template <typename Fn> void for_each_self_state(Fn&& fn) const;
    // What was known of the peer of a row that left, as show() needs it (nullptr: nothing);
    // the search starts at `next`, and `next` is left after the one found.
    const Peer* departed(Nsid nsid, std::uint64_t since_usec, std::size_t& next) const;

    Kernel& kernel_;
    Config config_;
    Clock clock_;
    registry::Registry registry_;
    EngineStats stats_;
    // Host scope: observer -> (its id -> self's id for the same peer, -1: none), per batch.
    std::map<Observer, std::optional<std::map<Nsid, Nsid>>> foreign_cache_;
    // Host scope: observer -> its id for our own namespace (self has none for itself, so the
    // dump cannot say which row names us), refreshed with each read of its table.
    std::map<Observer, Nsid> own_ids_;
    netns::Catalog catalog_;
    Feed feed_;
    bool fds_due_ = false;
    bool fd_search_running_ = false;
    // The unheld rows (id, first seen) the last search began for.
    std::set<std::pair<Nsid, std::uint64_t>> fd_searched_for_;
    std::uint64_t fd_searched_usec_ = 0; // when it began
    // When the last search that walked every process began: no peer is pinned before one
    // that began after it was unheld found nothing.
    std::uint64_t fd_covered_usec_ = 0;
    std::uint64_t fd_copies_denied_ = 0;
    std::unordered_set<uid_t> no_copies_from_; // users whose processes swapped an fd under a copy
    ByNsid<Peer> peers_;
    // Rows of self's table that left since the last show(), with what was known of their
    // peers: (nsid, since, peer), in the order they left.
    std::vector<std::tuple<Nsid, std::uint64_t, Peer>> departed_;
    UnheldRows unheld_;
    std::unordered_map<Nsid, bool> touched_; // rows to settle; true: their identity changed
    std::set<std::pair<std::uint64_t, Nsid>> deadlines_; // (wall clock, row) to settle then
    // Self's rows that had no identity when they last changed (a superset of those without).
    std::set<Nsid> unidentified_;
    std::uint64_t pass_started_usec_ = 0;
    bool verdicts_due_ = false;             // a table read ended a pass; renew once the rows are in
    std::uint64_t mounts_scanned_usec_ = 0; // when the mount table was last read; 0: never
    bool refresh_due_ = false;
    bool resync_due_ = false;
    bool another_round_ = false; // ids arrived unexplained while a round was under way
    std::uint64_t saved_ids_version_ = UINT64_MAX;
    // From the id cache: first-seen times by cookie (taken once a row is identified), the ids
    // saved (for deaths while down) and when they were saved.
    std::unordered_map<std::uint64_t, std::uint64_t> first_seen_;
    // From the id cache, by cookie: since when nothing visible held a namespace before the
    // restart (its verdict's clock resumes from there).
    std::unordered_map<std::uint64_t, std::uint64_t> saved_unheld_;
    // Namespaces without an id that only fds hold, as the last complete search met them (by
    // inode): for unlisted().
    struct HeldWithoutId {
        registry::Identity peer;
        std::uint64_t first_found_usec = 0;
    };
    std::unordered_map<std::uint64_t, HeldWithoutId> held_without_id_;
    // Bumped when a row's leaking-since changes: the id cache keeps it (saved when it moved).
    std::uint64_t evidence_version_ = 0;
    std::uint64_t saved_evidence_version_ = 0;
    netns::SavedIds cached_ids_;
    std::uint64_t cache_saved_usec_ = 0;
    std::unordered_map<Nsid, std::uint64_t> pending_down_; // saved id -> its saved cookie
    std::string boot_id_;
};

} // namespace nsidd::mirror
