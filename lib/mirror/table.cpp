// SPDX-License-Identifier: LGPL-2.1-or-later
// Reading tables from the kernel: self's (dump, reachable namespaces, probes) and, in host
// scope, other observers' (TARGET_NSID dump and probes). docs/kernel.md explains the cuts.
#include <algorithm>

#include "mirror/engine.hpp"

namespace nsidd::mirror {
namespace {

using registry::Entry;

// Past the highest id known, how far to probe for more: auto ids are dense from 0.
constexpr Nsid kProbeSlack = 512;
constexpr std::size_t kProbeStep = 4096;

} // namespace

Result<std::vector<Entry>> Engine::read_self(registry::Source source) {
    const auto now = clock_.realtime();
    kernel_.own_id(); // refreshed at each read: the kernel may have given us one meanwhile
    auto dump = kernel_.dump(std::nullopt);
    if (!dump)
        return fail(dump.error());
    std::map<Nsid, Entry> truth;
    for (const auto& row : dump->rows)
        if (row.nsid >= 0)
            truth.emplace(row.nsid, Entry{row.nsid, row.nsid, source, now});
    stats_.last_probes = 0;
    stats_.last_dump_truncated = dump->maybe_cut;
    if (dump->maybe_cut) {
        // The rest is found by asking, as little as possible: every question about a present
        // id costs the kernel a walk of the table (docs/kernel.md, "Asking for one id").
        const auto probe_source =
            source == registry::Source::Dump ? registry::Source::Probe : source;
        const Nsid dump_highest = truth.empty() ? 0 : truth.rbegin()->first;
        stats_.last_probes += learn_reachable(truth, probe_source);
        auto probed_to = probe_dense(truth, dump_highest, probe_source);
        if (!probed_to)
            return fail(probed_to.error());
        if (auto r = probe_sparse(truth, *probed_to, probe_source); !r)
            return fail(r.error());
    }
    std::vector<Entry> out;
    out.reserve(truth.size());
    for (auto& [nsid, e] : truth)
        out.push_back(std::move(e));
    return out;
}

// Every namespace we can reach, by a fresh discovery pass (open, ask, close). An id never
// changes while its namespace lives, so only namespaces met for the first time, or without an
// id so far, are asked; the others' ids are certain. This is the only way to find sparse
// explicit ids past the dump's cut.
std::size_t Engine::learn_reachable(std::map<Nsid, Entry>& truth, registry::Source source) {
    const auto now = clock_.realtime();
    const auto before = catalog_.stats().queried;
    catalog_.set_ask_new(true);
    catalog_.restart_pass();
    scan_mounts(true);
    pass_started_usec_ = now;
    while (!catalog_.scan_proc(SIZE_MAX, now)) {
    }
    catalog_.begin_round();
    catalog_.ask_unassigned();
    verdicts_due_ = true;
    for (const auto& [cookie, ns] : catalog_.namespaces())
        if (ns.nsid)
            truth.emplace(*ns.nsid, Entry{*ns.nsid, *ns.nsid, source, now});
    return catalog_.stats().queried - before;
}

// By id over the dense range (auto ids are dense from 0: it grows from the dump's highest id,
// not from sparse ones), for ids not known yet: those of namespaces nothing visible holds. An
// absent id costs the kernel nothing. Returns the highest id probed.
Result<Nsid> Engine::probe_dense(std::map<Nsid, Entry>& truth, Nsid dump_highest,
                                 registry::Source source) {
    const auto now = clock_.realtime();
    std::int64_t limit = std::int64_t{dump_highest} + kProbeSlack;
    std::vector<Nsid> ask;
    for (std::int64_t next = 0; next <= limit;) {
        ask.clear();
        const std::int64_t end = std::min<std::int64_t>(next + kProbeStep, limit + 1);
        for (; next < end; ++next) {
            if (truth.count(static_cast<Nsid>(next)))
                limit = std::max<std::int64_t>(limit, next + kProbeSlack);
            else
                ask.push_back(static_cast<Nsid>(next));
        }
        auto found = kernel_.translate(ask, std::nullopt);
        if (!found)
            return fail(found.error());
        stats_.last_probes += ask.size();
        for (std::size_t i = 0; i < found->size() && i < ask.size(); ++i)
            if ((*found)[i]) {
                truth.emplace(ask[i], Entry{ask[i], ask[i], source, now});
                limit = std::max<std::int64_t>(limit, std::int64_t{ask[i]} + kProbeSlack);
            }
        limit = std::min<std::int64_t>(limit, INT32_MAX);
    }
    return static_cast<Nsid>(limit);
}

// Sparse ids the registry already knows past the range: still there?
Result<void> Engine::probe_sparse(std::map<Nsid, Entry>& truth, Nsid probed_to,
                                  registry::Source source) {
    const auto now = clock_.realtime();
    std::vector<Nsid> ask;
    for (const auto& [nsid, row] : registry_.table(registry::kSelf)->rows)
        if (nsid > probed_to && !truth.count(nsid))
            ask.push_back(nsid);
    if (ask.empty())
        return {};
    auto found = kernel_.translate(ask, std::nullopt);
    if (!found)
        return fail(found.error());
    stats_.last_probes += ask.size();
    for (std::size_t i = 0; i < found->size() && i < ask.size(); ++i)
        if ((*found)[i])
            truth.emplace(ask[i], Entry{ask[i], ask[i], source, now});
    return {};
}

const std::map<Nsid, Nsid>* Engine::foreign_table(Observer o) {
    if (auto it = foreign_cache_.find(o); it != foreign_cache_.end())
        return it->second ? &*it->second : nullptr;
    auto& slot = foreign_cache_[o];
    auto dump = kernel_.dump(o);
    if (!dump)
        return nullptr; // o is gone, or not ours to read
    std::map<Nsid, Nsid> table;
    for (const auto& row : dump->rows)
        if (row.nsid >= 0)
            table[row.nsid] = row.current_nsid.value_or(-1);
    // Past a cut, ask o's id for every peer self knows. Peers self has no id for stay
    // invisible past the cut (docs/kernel.md, "Dumps are cut").
    if (dump->maybe_cut) {
        std::vector<Nsid> peers;
        for (const auto& [nsid, row] : registry_.table(registry::kSelf)->rows)
            peers.push_back(nsid);
        if (auto ids = kernel_.translate(peers, o)) {
            stats_.last_probes += peers.size();
            for (std::size_t i = 0; i < ids->size() && i < peers.size(); ++i)
                if ((*ids)[i] && *(*ids)[i] >= 0)
                    table[*(*ids)[i]] = peers[i];
        }
    }
    if (auto own = kernel_.own_id_in(o))
        own_ids_[o] = *own;
    else
        own_ids_.erase(o);
    slot = std::move(table);
    return &*slot;
}

std::vector<Entry> Engine::foreign_entries(Observer o, registry::Source source) {
    std::vector<Entry> out;
    const auto now = clock_.realtime();
    if (const auto* t = foreign_table(o))
        for (const auto& [nsid, current] : *t)
            out.push_back(Entry{nsid, current >= 0 ? std::optional<Nsid>(current) : std::nullopt,
                                source, now});
    return out;
}

// Host scope: every observer self has an id for, and only those; the tables of observers that
// self no longer names are emptied (their namespace is gone).
void Engine::resync_foreign(registry::Source source, registry::Changes& changes) {
    const auto& self = registry_.table(registry::kSelf)->rows;
    std::vector<std::pair<Observer, bool>> observers; // (observer, alive)
    for (const auto& [nsid, row] : self)
        observers.emplace_back(nsid, true);
    for (const auto& [o, t] : registry_.tables())
        if (o != registry::kSelf && !self.count(o))
            observers.emplace_back(o, false);
    for (const auto& [o, alive] : observers) {
        if (!alive)
            own_ids_.erase(o);
        auto truth = alive ? foreign_entries(o, source) : std::vector<Entry>{};
        changes.append(registry_.resync(o, std::move(truth), clock_.realtime()));
    }
}

// Host scope: reads the tables of observers that self gained an id for in `changes`.
void Engine::read_new_observers(registry::Changes& changes) {
    std::vector<Observer> fresh;
    for (const auto& c : changes.listed()) // (every change of self's table)
        if (c.observer == registry::kSelf && !c.removed &&
            (c.kind == registry::ChangeKind::New || c.kind == registry::ChangeKind::Resync))
            fresh.push_back(c.entry.nsid);
    for (Observer o : fresh)
        changes.append(
            registry_.resync(o, foreign_entries(o, registry::Source::Dump), clock_.realtime()));
}

bool Engine::is_assigned(Observer observer, Nsid nsid) {
    if (observer != registry::kSelf) {
        if (!registry_.table(registry::kSelf)->rows.count(observer))
            return false; // the observer is gone: its table with it
        const auto* t = foreign_table(observer);
        return t == nullptr || t->count(nsid) != 0; // unreadable: keep, resync settles it
    }
    auto found = kernel_.translate(std::span<const Nsid>(&nsid, 1), std::nullopt);
    // On a failed question, keep the entry: the next resync settles it either way.
    return !found || found->empty() || (*found)[0].has_value();
}

} // namespace nsidd::mirror
