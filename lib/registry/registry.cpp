// SPDX-License-Identifier: LGPL-2.1-or-later
#include "registry/registry.hpp"

#include <algorithm>
#include <cassert>
#include <iterator>

namespace nsidd::registry {

Registry::Registry(std::size_t history_capacity) : history_capacity_(history_capacity) {
    tables_[kSelf];
}

const Registry::Table* Registry::table(Observer observer) const {
    auto it = tables_.find(observer);
    return it == tables_.end() ? nullptr : &it->second;
}

std::size_t Registry::entry_count() const noexcept {
    std::size_t n = 0;
    for (const auto& [observer, t] : tables_)
        n += t.rows.size();
    return n;
}

Registry::Table& Registry::table_for(Observer observer) {
    // Self's table is made first and never goes: the first unless an observer's id is negative.
    if (observer == kSelf && tables_.begin()->first == kSelf)
        return tables_.begin()->second;
    auto [it, inserted] = tables_.try_emplace(observer);
    if (inserted)
        it->second.stamp = stamp_;
    return it->second;
}

std::uint64_t Registry::death_of(Nsid peer) {
    // A few: looked at in turn, the latest first.
    if (dying_.size() <= 16) {
        for (auto d = dying_.rbegin(); d != dying_.rend(); ++d)
            if (d->first == peer)
                return d->second;
        return 0;
    }
    for (; dying_indexed_ < dying_.size(); ++dying_indexed_)
        dying_by_id_[dying_[dying_indexed_].first] = dying_[dying_indexed_].second;
    const auto d = dying_by_id_.find(peer);
    return d == dying_by_id_.end() ? 0 : d->second;
}

bool Registry::purged_later(Observer observer, const Row& row) {
    const auto peer = peer_of(observer, row.entry);
    return peer && row.stamp < death_of(*peer);
}

Registry::Table& Registry::live_table(Observer observer, Changes& changes) {
    // An observer that died earlier in this batch, its id already given to a new netns: the
    // old table goes now, so that the new observer's rows do not share its fate in the sweep.
    if (const auto death = observer != kSelf && !dying_.empty() ? death_of(observer) : 0) {
        if (auto t = tables_.find(observer); t != tables_.end() && t->second.stamp < death)
            drop_table(t, changes);
    }
    return table_for(observer);
}

void Registry::record_death(const Entry& dead, std::uint64_t now_usec) {
    ++counters_.deaths;
    dying_.emplace_back(dead.nsid, stamp_);
    if (history_capacity_ == 0)
        return;
    if (history_.size() == history_capacity_)
        history_.pop_front();
    history_.push_back(Death{dead.nsid, {}, dead.since_usec, now_usec, {}, 0});
}

void Registry::record_death_while_down(Death death) {
    if (history_capacity_ == 0)
        return;
    if (history_.size() == history_capacity_)
        history_.pop_front();
    history_.push_back(std::move(death));
}

void Registry::describe_death(Nsid nsid, std::uint64_t since_usec, const Identity& peer,
                              PeerState state) {
    // The death was just recorded: it is among the last ones, not described yet.
    for (auto it = history_.rbegin(); it != history_.rend(); ++it) {
        if (it->nsid != nsid || it->down_since_usec != 0 || it->since_usec != since_usec ||
            it->peer != Identity{})
            continue;
        it->peer = peer;
        it->since_usec = std::min(since_usec, peer.first_seen_usec.value_or(UINT64_MAX));
        it->state = state;
        // A namespace cannot die while a bind mount holds it: whatever names it was last seen
        // with are former ones by now (the mount went before the death was told).
        if (!it->peer.names.empty()) {
            it->peer.former_names = Strings::merge(it->peer.former_names, it->peer.names);
            it->peer.names = {};
        }
        return;
    }
}

void Registry::index_row(Observer observer, const Entry& entry) {
    const auto peer = peer_of(observer, entry);
    if (observer == kSelf || !peer)
        return;
    auto& listing = by_peer_[*peer];
    listing.rows.push_back({observer, entry.nsid, stamp_});
    listing.newest = stamp_;
    if (++by_peer_size_ < by_peer_rebuild_at_)
        return;
    // Mostly stale entries by now: list the rows as they are.
    by_peer_.clear();
    by_peer_size_ = 0;
    for (const auto& [o, table] : tables_)
        if (o != kSelf)
            for (const auto& [nsid, row] : table.rows)
                if (const auto p = peer_of(o, row.entry)) {
                    auto& listing = by_peer_[*p];
                    listing.rows.push_back({o, nsid, row.stamp});
                    listing.newest = std::max(listing.newest, row.stamp);
                    ++by_peer_size_;
                }
    by_peer_rebuild_at_ = std::max<std::size_t>(4096, 2 * by_peer_size_);
}

void Registry::for_each_row_naming(Nsid peer,
                                   const std::function<void(Observer, const Entry&)>& fn) const {
    const auto listed = by_peer_.find(peer);
    if (listed == by_peer_.end())
        return;
    for (const auto& l : listed->second.rows) {
        const auto t = tables_.find(l.observer);
        if (t == tables_.end())
            continue;
        const auto r = t->second.rows.find(l.nsid);
        if (r != t->second.rows.end() && r->second.stamp == l.stamp &&
            peer_of(l.observer, r->second.entry) == peer)
            fn(l.observer, r->second.entry);
    }
}

void Registry::purge_listed(ByPeer::iterator listed, std::uint64_t death,
                            std::vector<Change>& changes) {
    for (const auto& l : listed->second.rows) {
        if (l.stamp >= death)
            continue; // made after the death: a new peer's
        const auto t = tables_.find(l.observer);
        if (t == tables_.end())
            continue;
        const auto r = t->second.rows.find(l.nsid);
        if (r == t->second.rows.end() || r->second.stamp != l.stamp)
            continue; // gone or replaced since it was listed
        changes.emplace_back(ChangeKind::Purge, l.observer, r->second.entry);
        ++counters_.purged_entries;
        t->second.rows.erase_one(r);
    }
}

void Registry::forget_listed(ByPeer::iterator listed, std::uint64_t death) {
    auto& rows = listed->second.rows;
    const auto before = rows.size();
    if (listed->second.newest >= death) // some were made after the death: a new peer's, kept
        std::erase_if(rows, [death](const Listed& l) { return l.stamp < death; });
    else
        rows.clear();
    by_peer_size_ -= before - rows.size();
    if (rows.empty())
        by_peer_.erase(listed);
}

std::map<Observer, Registry::Table>::iterator
Registry::drop_table(std::map<Observer, Table>::iterator t, Changes& changes) {
    counters_.purged_entries += t->second.rows.size();
    changes.vanish(t->first, std::move(t->second.rows));
    return tables_.erase(t);
}

template <typename DeathAt> void Registry::purge_all_rows(DeathAt death_at, Changes& out) {
    std::vector<std::pair<Nsid, Row>> purged;
    for (auto t = tables_.begin(); t != tables_.end();) {
        auto& [observer, table] = *t;
        if (observer == kSelf) {
            ++t;
            continue;
        }
        // A dead observer's own table vanishes with it; the kernel sends nothing for it.
        if (table.stamp < death_at(observer)) {
            t = drop_table(t, out);
            continue;
        }
        purged.clear();
        // (Another table's row names its peer by self's id, or by nothing: see peer_of.)
        counters_.purged_entries += table.rows.remove_if(
            [&death_at](const auto& row) {
                return row.second.stamp < death_at(row.second.entry.current_nsid.value_or(-1));
            },
            purged);
        for (const auto& row : purged)
            out.list_.emplace_back(ChangeKind::Purge, observer, row.second.entry);
        ++t;
    }
}

std::vector<std::uint64_t> Registry::dense_deaths() const {
    Nsid top = 0;
    for (const auto& [peer, death] : dying_)
        top = std::max(top, peer);
    std::vector<std::uint64_t> dense;
    if (static_cast<std::size_t>(top) <= 16 * dying_.size() + 1024) {
        dense.resize(static_cast<std::size_t>(top) + 2);
        for (const auto& [peer, death] : dying_)
            dense[static_cast<std::size_t>(peer)] = death;
    }
    return dense;
}

void Registry::sweep(Changes& out) {
    ++counters_.sweeps;
    // The latest death of each id, looked up once per row: in an array by id where the ids are
    // dense, else by id in the hash.
    const auto dense = dense_deaths();
    const auto last = static_cast<std::uint32_t>(dense.size()) - 1;
    // A stamp later than the death means the id was reused in this batch. Self's row for a dead
    // peer is the one its death removed (a DEL, a replacing NEW or a resync): nothing else in
    // self's table points at it.
    std::vector<std::pair<Nsid, std::uint64_t>> dead; // each id once, at its latest death
    std::vector<std::pair<ByPeer::iterator, std::uint64_t>> lists;
    std::size_t listed = 0;
    dead.reserve(dying_.size());
    lists.reserve(dying_.size());
    for (const auto& [peer, death] : dying_) {
        if ((dense.empty() ? death_of(peer) : dense[static_cast<std::size_t>(peer)]) != death)
            continue; // the id died again later in the batch: that death counts
        dead.emplace_back(peer, death);
        if (const auto l = by_peer_.find(peer); l != by_peer_.end()) {
            listed += l->second.rows.size();
            lists.emplace_back(l, death);
        }
    }
    // At most one change per row listed: made room for once.
    out.list_.reserve(out.list_.size() + std::min(listed, by_peer_size_));
    // Through the index, O(rows that name the dead), each dead observer's table found by id;
    // one walk of every table when those rows are many (a big burst): the walk is then cheaper
    // than as many lookups. (The index's size stands for the number of rows: it is at least
    // that, and at most about twice.)
    if (listed * 8 <= by_peer_size_) {
        for (const auto& [peer, death] : dead)
            if (const auto t = tables_.find(peer);
                peer != kSelf && t != tables_.end() && t->second.stamp < death)
                drop_table(t, out);
        for (const auto& [l, death] : lists)
            purge_listed(l, death, out.list_);
    } else if (!dense.empty()) {
        purge_all_rows(
            [&dense, last](Nsid peer) {
                return dense[std::min(static_cast<std::uint32_t>(peer), last)];
            },
            out);
    } else {
        purge_all_rows([this](Nsid peer) { return peer < 0 ? 0 : death_of(peer); }, out);
    }
    for (const auto& [l, death] : lists)
        forget_listed(l, death);
    dying_.clear();
    dying_by_id_.clear();
    dying_indexed_ = 0;
}

Changes Registry::apply(const Batch& batch, const IsAssigned& is_assigned) {
    Changes out;
    if (batch.ops.empty())
        return out;
    auto& changes = out.list_;
    changes.reserve(batch.ops.size()); // one change per op, mostly; sweeps reserve their own
    ++counters_.batches;
    for (const Op& op : batch.ops) {
        ++counters_.events;
        ++stamp_;
        Table& table = live_table(op.observer, out);
        if (op.kind == Op::Kind::New)
            apply_new(op, table, batch, is_assigned, changes);
        else
            apply_del(op, table, batch, is_assigned, changes);
    }
    if (!dying_.empty())
        sweep(out);
    return out;
}

void Registry::apply_new(const Op& op, Table& table, const Batch& batch,
                         const IsAssigned& is_assigned, std::vector<Change>& changes) {
    auto it = table.rows.find(op.nsid);
    const auto current = op.observer == kSelf ? std::optional<Nsid>(op.nsid) : op.current_nsid;
    if (it == table.rows.end()) {
        if (batch.reconcile) {
            // Older than the snapshot, which lacks the id: gone again since?
            ++counters_.confirmations;
            if (!is_assigned(op.observer, op.nsid)) {
                ++counters_.stale;
                return;
            }
        }
        Entry e{op.nsid, current, Source::Event, batch.now_usec};
        table.rows.emplace(op.nsid, Row{e, false, stamp_});
        index_row(op.observer, e);
        changes.emplace_back(ChangeKind::New, op.observer, std::move(e));
        return;
    }
    Row& row = it->second;
    if (op.observer != kSelf && purged_later(op.observer, row)) {
        // The row's peer died in this batch and the sweep would drop it; the id now
        // names a new peer. The old row goes now, the new one takes its place.
        changes.emplace_back(ChangeKind::Purge, op.observer, row.entry);
        ++counters_.purged_entries;
        row = Row{Entry{op.nsid, current, Source::Event, batch.now_usec}, false, stamp_};
        index_row(op.observer, row.entry);
        changes.emplace_back(ChangeKind::New, op.observer, row.entry);
        return;
    }
    if (op.observer != kSelf && row.entry.current_nsid == current) {
        // The same mapping again (our read of a new observer's table raced its event):
        // a repeat, not a new holder.
        ++counters_.stale;
        return;
    }
    if (batch.reconcile) {
        // Either a repeat of what the snapshot already holds, or a new holder whose
        // predecessor died after the snapshot: nothing here tells which. The caller
        // reads the table again (see Counters::ambiguous).
        ++counters_.ambiguous;
        row.unsure = false;
        return;
    }
    // The DEL of the previous holder is still in flight (NEW k can overtake DEL k,
    // docs/kernel.md, "Events"): skip it when it comes.
    row.unsure = true;
    // Ids are only freed by the peer's death, so the old peer is dead.
    if (op.observer == kSelf)
        record_death(row.entry, batch.now_usec);
    changes.emplace_back(ChangeKind::Del, op.observer, row.entry);
    ++stamp_;
    row.entry = Entry{op.nsid, current, Source::Event, batch.now_usec};
    row.stamp = stamp_;
    index_row(op.observer, row.entry);
    changes.emplace_back(ChangeKind::New, op.observer, row.entry);
}

void Registry::apply_del(const Op& op, Table& table, const Batch& batch,
                         const IsAssigned& is_assigned, std::vector<Change>& changes) {
    auto it = table.rows.find(op.nsid);
    if (it == table.rows.end()) {
        // Already gone: purged with its peer (the kernel's later DEL confirms it), or
        // never seen.
        ++(op.observer != kSelf ? counters_.confirmed : counters_.stale);
        return;
    }
    if (batch.reconcile) {
        // Maybe older than the snapshot that holds the id: ask whether it is still there.
        ++counters_.confirmations;
        if (is_assigned(op.observer, op.nsid)) {
            it->second.unsure = false;
            ++counters_.stale;
            return;
        }
    } else if (it->second.unsure) {
        // This row replaced a holder whose DEL was still in flight (NEW k overtook DEL k,
        // docs/kernel.md, "Events"). That DEL comes before the new holder's own: the kernel
        // sends the old holder's from the same cleanup run that freed the id, and the new
        // holder can only die in a later run. So this DEL is the old holder's, already
        // accounted for. (A GET would answer for the present, not for this event, and
        // could remove the new holder before its own table's events were applied.)
        it->second.unsure = false;
        ++counters_.stale;
        return;
    }
    if (op.observer != kSelf) {
        // A survivor's DEL for a peer that died earlier in this batch: the kernel confirms
        // what the sweep is about to purge. Leave it to the sweep (one pass, one record).
        if (purged_later(op.observer, it->second)) {
            ++counters_.confirmed;
            return;
        }
    }
    const Entry dead = it->second.entry;
    table.rows.erase_one(it);
    if (op.observer == kSelf)
        record_death(dead, batch.now_usec);
    changes.emplace_back(ChangeKind::Del, op.observer, dead);
}

Changes Registry::resync(Observer observer, std::vector<Entry> truth, std::uint64_t now_usec) {
    Changes out;
    auto& changes = out.list_;
    std::sort(truth.begin(), truth.end(),
              [](const Entry& a, const Entry& b) { return a.nsid < b.nsid; });
    truth.erase(std::unique(truth.begin(), truth.end(),
                            [](const Entry& a, const Entry& b) { return a.nsid == b.nsid; }),
                truth.end());
    ++stamp_;
    Table& table = table_for(observer);
    auto removed = [&](Row&& row) {
        ++counters_.resync_changes;
        if (observer == kSelf)
            record_death(row.entry, now_usec);
        changes.emplace_back(ChangeKind::Resync, observer, row.entry, true);
    };
    // Merge two sorted sequences: rows not in truth leave, truth not in rows arrives.
    auto t = truth.begin();
    for (auto r = table.rows.begin(); r != table.rows.end();) {
        if (t == truth.end() || r->first < t->nsid) {
            removed(std::move(r->second));
            r = table.rows.erase(r);
            continue;
        }
        if (t->nsid < r->first) {
            ++t;
            continue;
        }
        if (observer != kSelf && r->second.entry.current_nsid != t->current_nsid) {
            removed(std::move(r->second)); // another peer under the same id
            r = table.rows.erase(r);
            continue; // re-added below as a new row
        }
        // The snapshot is the truth now: a DEL still owed to a replaced holder was either
        // queued before it (reconcile asks the kernel) or lost with an overrun.
        r->second.unsure = false;
        ++r;
        ++t;
    }
    table.rows.compact();
    ++stamp_;
    for (Entry& e : truth) {
        if (table.rows.count(e.nsid))
            continue;
        ++counters_.resync_changes;
        changes.emplace_back(ChangeKind::Resync, observer, e, false);
        const auto row = table.rows.emplace(e.nsid, Row{std::move(e), false, stamp_}).first;
        index_row(observer, row->second.entry);
    }
    if (!dying_.empty())
        sweep(out);
    return out;
}

const char* to_string(Source source) noexcept {
    switch (source) {
    case Source::Event:
        return "event";
    case Source::Dump:
        return "dump";
    case Source::Probe:
        return "probe";
    case Source::Resync:
        return "resync";
    }
    return "unknown";
}

const char* to_string(ChangeKind kind) noexcept {
    switch (kind) {
    case ChangeKind::New:
        return "new";
    case ChangeKind::Del:
        return "del";
    case ChangeKind::Purge:
        return "purge";
    case ChangeKind::Resync:
        return "resync";
    }
    return "unknown";
}

} // namespace nsidd::registry
