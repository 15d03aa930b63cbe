// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "util/flat_map.hpp"
#include "util/nonzero.hpp"
#include "util/peer_state.hpp"
#include "util/owner.hpp"
#include "util/shared.hpp"
#include "util/strings.hpp"

namespace nsidd::registry {

/// An nsid: a slot in one observer's table (0..INT32_MAX).
using Nsid = std::int32_t;
/// Whose table: kSelf, or the id that `self` gives the observer netns.
using Observer = std::int32_t;
inline constexpr Observer kSelf = -1;

/// How an entry was learned.
enum class Source : std::uint8_t { Event, Dump, Probe, Resync };

/// What held a dead peer alive at the last look before it died (util/peer_state.hpp).
using nsidd::PeerState;
using nsidd::to_string;

/// An fd of another process that is the peer namespace, or a socket created inside it.
struct FdHolder {
    std::int32_t pid = 0;
    std::string comm;
    std::int32_t fd = 0;
    bool socket = false;
    bool operator==(const FdHolder&) const = default;
};

/// What held a peer alive at the last look.
struct Holders {
    std::uint32_t processes = 0; ///< processes inside it (Identity::pid is one of them)
    /// Copies of `mounts` (or `other_mounts`) in other mount namespaces that go with them: one
    /// propagated mount is one holder.
    std::uint32_t also_in = 0;
    Shared<std::string> comm; ///< the command name of that one (shared with the catalog)
    Strings mounts;           ///< nsfs bind mounts of it, anywhere (sorted)
    /// Searched only while nothing above holds it. (This and the next are rarely set: shared,
    /// an empty one costs a row a null pointer.)
    Shared<std::vector<FdHolder>> fds;
    /// Bind mounts in other mount namespaces, as /proc/PID/root/PATH (sorted).
    Strings other_mounts;
    /// The same, with the process whose mount namespace has each and its owner (shared with
    /// the catalog).
    Shared<std::vector<CopyHolder>> copies;
    bool operator==(const Holders&) const = default;
};

/// What is known of a peer netns beyond its id; every field may be unknown.
struct Identity {
    // (The numbers are never 0 when known: Nonzero keeps each in 8 bytes. One per peer.)
    Nonzero<std::uint64_t> cookie; ///< NS_GET_ID / SO_NETNS_COOKIE, never reused
    Nonzero<std::uint64_t> inode;  ///< nsfs inode, reused after death
    /// Current /run/netns names (as `ip netns` lists), sorted; shared with the catalog.
    Strings names;
    /// Names it had under /run/netns, no longer (sorted); shared with the catalog.
    Strings former_names;
    std::optional<std::int32_t> pid; ///< one process inside it
    Holders holders;
    Shared<Owner> owner; ///< unknown: empty
    /// When nsidd first saw it, where that is earlier than the row (kept across restarts).
    Nonzero<std::uint64_t> first_seen_usec;
    bool operator==(const Identity&) const = default;
};

/// One row of a peer-ID table: the id, the peer it names where known, and when it was learned.
/// Only what the kernel's tables say: what is known of a peer beyond its id is the engine's, kept
/// once per peer beside self's table, not in the rows. Every table's row stays small, and so does
/// each change (docs/design.md, "Memory").
struct Entry {
    Entry() = default;
    Entry(Nsid id, std::optional<Nsid> current, Source learned, std::uint64_t since)
        : since_usec(since), nsid(id), current_nsid(current), source(learned) {}

    // (Fields in an order that leaves no padding but at the end, where a Row keeps its flag.)
    std::uint64_t since_usec = 0; ///< first seen, CLOCK_REALTIME
    Nsid nsid = 0;
    /// `self`'s id for the same peer (equal to nsid in self's own table), when known.
    std::optional<Nsid> current_nsid;
    Source source = Source::Event;
};

/// A peer that died, as recorded in the history ring.
struct Death {
    Nsid nsid = 0; ///< self's id of the dead peer
    Identity peer;
    std::uint64_t since_usec = 0; ///< first seen (across restarts, where known)
    std::uint64_t died_usec = 0;
    PeerState state = PeerState::Unknown; ///< what held it at the last look before it died
    /// Non-zero: it died while nsidd was down, after this time and before died_usec.
    std::uint64_t down_since_usec = 0;
};

enum class ChangeKind : std::uint8_t { New, Del, Purge, Resync };
/// One change to the mirror, in the order applied; what watchers are sent.
struct Change {
    Change(ChangeKind what, Observer whose, Entry row, bool left = false)
        : entry(std::move(row)), observer(whose), kind(what), removed(left) {}

    // (Fields in an order that leaves no padding: a burst makes one per row it drops.)
    Entry entry;
    Observer observer;
    ChangeKind kind;
    bool removed = false; ///< for Resync: the entry left the table (else it was added)
};

/// One decoded notification, mapped onto the registry.
struct Op {
    enum class Kind : std::uint8_t { New, Del } kind;
    Observer observer;
    Nsid nsid;
    std::optional<Nsid> current_nsid; ///< self's id of the peer, where known
};

/// Everything read from the event socket in one wakeup.
struct Batch {
    std::vector<Op> ops;
    std::uint64_t now_usec = 0;
    /// The events were queued while a snapshot was read, so some may be older than it: a NEW of
    /// an absent id or a DEL of a present one is checked with IsAssigned before it is applied,
    /// and a NEW for a present id is counted in Counters::ambiguous.
    bool reconcile = false;
};

/// Answers "is `nsid` assigned in `observer`'s table now?" — a kernel GET in the daemon, a model
/// in tests. Asked only in reconcile batches, whose events may predate the snapshot.
using IsAssigned = std::function<bool(Observer, Nsid)>;

/// Running totals since start.
struct Counters {
    std::uint64_t events = 0;         ///< ops applied
    std::uint64_t batches = 0;        ///< apply() calls with at least one op
    std::uint64_t sweeps = 0;         ///< purge sweeps run (at most one per batch or resync)
    std::uint64_t deaths = 0;         ///< peers that died
    std::uint64_t purged_entries = 0; ///< entries dropped by sweeps, dead peers' tables included
    std::uint64_t confirmations = 0;  ///< IsAssigned queries made
    std::uint64_t stale = 0;          ///< ops that changed nothing (repeats, DELs of absent ids)
    std::uint64_t confirmed = 0;      ///< survivors' DELs for entries purged with their peer
    std::uint64_t resync_changes = 0; ///< entries added or dropped by resync()
    /// Reconcile-batch NEWs for ids the snapshot already held: a repeat or a replacement,
    /// undecidable from the stream. When this grows, read the tables again.
    std::uint64_t ambiguous = 0;
};

/// Self's id for the peer of a row in `observer`'s table, where known.
inline std::optional<Nsid> peer_of(Observer observer, const Entry& entry) noexcept {
    if (observer == kSelf)
        return entry.nsid;
    if (entry.current_nsid && *entry.current_nsid >= 0)
        return entry.current_nsid;
    return std::nullopt;
}

class Changes;

/// The mirror of the kernel's peer-ID tables. Deterministic: no I/O, no clock.
class Registry {
public:
    /// An entry and the bookkeeping that decides what its next DEL means.
    struct Row {
        /// (Its flag below lives in the entry's tail padding: a row is 32 bytes.)
        [[no_unique_address]] Entry entry;
        /// The row came from a NEW over an occupied id: the next DEL for it is the old
        /// holder's, still in flight, and is skipped.
        bool unsure = false;
        std::uint64_t stamp = 0; ///< op counter at insertion (orders reuse within a batch)
    };
    /// One observer's peer-ID table: flat, a row costs its own size (docs/design.md, "Memory").
    /// A row erased stays dead in place; each erasing step compacts the table once it is done
    /// (never while a walk of its rows is under way).
    struct Table {
        FlatMap<Nsid, Row> rows;
        std::uint64_t stamp = 0; ///< op counter at creation
    };

    /// `history_capacity`: deaths kept, oldest dropped first.
    explicit Registry(std::size_t history_capacity);

    /// Applies a batch in order and then purges every dead peer in one sweep. Returns the changes.
    Changes apply(const Batch& batch, const IsAssigned& is_assigned);

    /// Replaces one table with what the kernel reported (`truth`, each entry's source set by the
    /// caller). Entries that match keep their first-seen time; self entries that vanished count
    /// as deaths and are purged everywhere. Returns the changes, all of kind Resync.
    Changes resync(Observer observer, std::vector<Entry> truth, std::uint64_t now_usec);

    /// Records a death nsidd did not see (it was down): history only, no table changes.
    void record_death_while_down(Death death);
    /// Says what the peer of self's row (nsid, first seen at since_usec) was, whose death was
    /// just recorded: its identity (its names become former ones; its first-seen time, where
    /// earlier, the death's) and the last state decided for it. Recorded deaths only.
    void describe_death(Nsid nsid, std::uint64_t since_usec, const Identity& peer, PeerState state);

    /// Calls `fn(observer, entry)` for each row of another table that names self's `peer`.
    void for_each_row_naming(Nsid peer,
                             const std::function<void(Observer, const Entry&)>& fn) const;

    const std::map<Observer, Table>& tables() const noexcept { return tables_; }
    /// The table of `observer`, or nullptr.
    const Table* table(Observer observer) const;
    std::size_t entry_count() const noexcept;
    /// Deaths, oldest first.
    const std::deque<Death>& history() const noexcept { return history_; }
    const Counters& counters() const noexcept { return counters_; }

private:
    // Host scope: peer (self's id) -> the rows of other tables that named it when they were
    // made, so that a sweep visits only the rows of the dead, not every row. A superset: a row
    // removed or replaced since stays listed until its peer dies or the index is rebuilt (when
    // it has grown to twice what it held after the last rebuild); the sweep checks each one.
    struct Listed {
        Observer observer;
        Nsid nsid;
        std::uint64_t stamp; // the row's: a later row under the same id is another
    };
    struct Listing {
        std::vector<Listed> rows;
        std::uint64_t newest = 0; // the latest stamp listed: a death after it drops them all
    };
    using ByPeer = std::unordered_map<Nsid, Listing>;

    // One op of a batch, in order.
    void apply_new(const Op& op, Table& table, const Batch& batch, const IsAssigned& is_assigned,
                   std::vector<Change>& changes);
    void apply_del(const Op& op, Table& table, const Batch& batch, const IsAssigned& is_assigned,
                   std::vector<Change>& changes);
    // A peer `self` called `nsid` died: history, counters and the dying set.
    void record_death(const Entry& dead, std::uint64_t now_usec);
    // The stamp of the latest death of self's `peer` in this batch, or 0 (stamps start at 1).
    std::uint64_t death_of(Nsid peer);
    // The latest death of each id in an array by id (0: alive, as stamps start at 1), where the
    // dead's ids are dense (the kernel gives the lowest free id); else empty. Its last slot
    // stands for every id past the others, and for none.
    std::vector<std::uint64_t> dense_deaths() const;
    // Drops every table of a dying observer and every row that points at a dying peer.
    void sweep(Changes& changes);
    Table& table_for(Observer observer);
    // The row points at a peer that died earlier in this batch: the sweep will drop it.
    bool purged_later(Observer observer, const Row& row);
    // table_for() that first drops the table of a dead observer whose id was reused.
    Table& live_table(Observer observer, Changes& changes);
    // Lists a row of another observer's table under the peer it names (see by_peer_).
    void index_row(Observer observer, const Entry& entry);
    // Purges the rows of other tables listed under a peer dead at `death`, through the index.
    void purge_listed(ByPeer::iterator listed, std::uint64_t death, std::vector<Change>& changes);
    // Forgets what was listed under a peer dead at `death`, once its rows are gone.
    void forget_listed(ByPeer::iterator listed, std::uint64_t death);
    // Purges them, and drops the dead observers' tables, by walking every row of every other
    // table (cheaper when the dead are named by many rows); `death_at(peer)` is the latest death
    // of each peer in this batch, or 0.
    template <typename DeathAt> void purge_all_rows(DeathAt death_at, Changes& changes);
    // A dead observer's table leaves whole (into `changes`); returns the next table.
    std::map<Observer, Table>::iterator drop_table(std::map<Observer, Table>::iterator t,
                                                   Changes& changes);

    std::map<Observer, Table> tables_;
    // Peers (self ids) that died in the current batch, in order, with the stamp of each death:
    // rows and tables stamped later belong to a new peer that reused the id and survive the
    // sweep. By id (the latest death of each) only once something asks: a burst of self's DELs
    // never does, and the sweep looks them up in an array where their ids are dense.
    std::vector<std::pair<Nsid, std::uint64_t>> dying_;
    std::unordered_map<Nsid, std::uint64_t> dying_by_id_;
    std::size_t dying_indexed_ = 0; // how many of dying_ are in dying_by_id_
    ByPeer by_peer_;
    std::size_t by_peer_size_ = 0;
    std::size_t by_peer_rebuild_at_ = 4096;
    std::uint64_t stamp_ = 0;
    std::deque<Death> history_;
    std::size_t history_capacity_;
    Counters counters_;
};

/// What one apply() or resync() changed, in the order applied. A dead observer's table leaves
/// whole: kept as it was, its rows are not copied into the list one by one (a burst drops
/// hundreds of tables, each gone at once); going through the changes gives each of its rows as
/// a Purge, where the table left.
class Changes {
public:
    class Iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = Change;
        using difference_type = std::ptrdiff_t;
        using reference = Change; // (a vanished table's rows are made into changes as they come)
        using pointer = void;

        Iterator() = default;
        Change operator*() const;
        Iterator& operator++();
        Iterator operator++(int) {
            auto was = *this;
            ++*this;
            return was;
        }
        bool operator==(const Iterator& o) const noexcept;

    private:
        friend class Changes;
        Iterator(const Changes* of, std::size_t at, std::size_t table);
        bool in_table() const noexcept; // at a row of a vanished table, not at list[at_]
        void settle() noexcept;         // past the tables whose rows are all given

        const Changes* of_ = nullptr;
        std::size_t at_ = 0;    // the next change of the list
        std::size_t table_ = 0; // the next vanished table, whose rows come before list[at_]...
        FlatMap<Nsid, Registry::Row>::const_iterator row_; // ...from this one
    };

    Iterator begin() const { return {this, 0, 0}; }
    Iterator end() const { return {this, list_.size(), vanished_.size()}; }
    std::size_t size() const noexcept { return list_.size() + vanished_rows_; }
    bool empty() const noexcept { return size() == 0; }
    /// The changes but the vanished tables' rows: every change of self's table is here.
    const std::vector<Change>& listed() const noexcept { return list_; }
    /// Every change in one list, in order.
    std::vector<Change> all() const { return {begin(), end()}; }
    /// Appends what `more` changed, after this.
    void append(Changes&& more);

private:
    friend class Registry;
    struct Vanished {
        Observer observer;
        FlatMap<Nsid, Registry::Row> rows;
        std::size_t before; // its rows come before list_[before]
    };
    // A dead observer's table leaves here, whole.
    void vanish(Observer observer, FlatMap<Nsid, Registry::Row>&& rows);

    std::vector<Change> list_;
    std::vector<Vanished> vanished_;
    std::size_t vanished_rows_ = 0;
};

/// The name used on the wire and in logs: "event", "dump", "probe", "resync".
const char* to_string(Source source) noexcept;
/// "new", "del", "purge", "resync", "update".
const char* to_string(ChangeKind kind) noexcept;

} // namespace nsidd::registry
