// SPDX-License-Identifier: LGPL-2.1-or-later
#include "mirror/engine.hpp"

#include <algorithm>
#include <set>
#include <utility>

#include "util/time.hpp"

namespace nsidd::mirror {
namespace {

using registry::Entry;

constexpr int kResyncAttempts = 4;

} // namespace

const char* to_string(ResyncReason reason) noexcept {
    switch (reason) {
    case ResyncReason::Startup:
        return "startup";
    case ResyncReason::Overrun:
        return "overrun";
    case ResyncReason::Periodic:
        return "periodic";
    case ResyncReason::Manual:
        return "manual";
    case ResyncReason::Replaced:
        return "replaced";
    case ResyncReason::Count:
        break;
    }
    return "unknown";
}

Clock Clock::system() {
    return Clock{realtime_usec, monotonic_usec};
}

std::uint64_t EngineStats::resyncs_total() const noexcept {
    std::uint64_t n = 0;
    for (auto r : resyncs)
        n += r;
    return n;
}

Engine::Engine(Kernel& kernel, Config config, Clock clock)
    : kernel_(kernel), config_(std::move(config)), clock_(std::move(clock)),
      registry_(config_.history), catalog_(config_.roots, kernel_, config_.assign_ids),
      feed_(config_.first_seq) {}

Result<std::size_t> Engine::resync(ResyncReason reason) {
    const auto started = clock_.monotonic();
    resync_due_ = false;
    registry::Changes changes;
    const auto source =
        reason == ResyncReason::Startup ? registry::Source::Dump : registry::Source::Resync;
    for (int attempt = 0; attempt < kResyncAttempts; ++attempt) {
        auto table = read_self(source);
        if (!table) {
            ++stats_.resync_failures;
            departed_.clear(); // (what the attempts before changed is not shown)
            return fail(table.error());
        }
        foreign_cache_.clear();
        find_replaced(*table, changes);
        auto diff = registry_.resync(registry::kSelf, std::move(*table), clock_.realtime());
        identify(diff);
        if (std::exchange(verdicts_due_, false))
            renew_verdicts();
        changes.append(std::move(diff));
        if (config_.host)
            resync_foreign(source, changes);
        // Events queued while we read may be older than what we read: reconcile them. A NEW
        // for an id the snapshot holds is undecidable (repeat or replacement): read again.
        const auto ambiguous = registry_.counters().ambiguous;
        auto queued = apply_batch(true);
        changes.append(std::move(queued.changes));
        if (!queued.lost && registry_.counters().ambiguous == ambiguous) {
            if (reason == ResyncReason::Startup)
                find_deaths_while_down();
            ++stats_.resyncs[static_cast<std::size_t>(reason)];
            stats_.last_resync_usec = clock_.realtime();
            stats_.last_resync_duration_usec = clock_.monotonic() - started;
            const auto count = changes.size();
            show(std::move(changes));
            return count;
        }
    }
    ++stats_.resync_failures;
    departed_.clear();
    return fail(Errc::Timeout);
}

// A snapshot keeps a row whose id it still holds, but events lost in an overrun may have
// hidden a death and the reuse of the id by a new peer (DEL and NEW both lost). Ids are unique
// among live peers and never change while a peer lives, so a row whose namespace is still
// there under its cookie is kept; one whose namespace is gone is checked against the reachable
// namespaces: when another one holds the id now, the row's peer died and is recorded so.
void Engine::find_replaced(const std::vector<Entry>& truth, registry::Changes& changes) {
    std::set<Nsid> gone;
    for (const auto& e : truth)
        if (const auto& cookie = peer(e.nsid).cookie; cookie && !catalog_.is_reachable(*cookie))
            gone.insert(e.nsid);
    if (gone.empty())
        return;
    // Who holds those ids now: new mounts first, then the namespaces known without an id, and
    // only then a pass over /proc, each until every doubtful id is claimed.
    const auto claimed = [&] {
        return std::all_of(gone.begin(), gone.end(), [&](Nsid k) {
            const auto* ns = catalog_.by_nsid(k);
            return ns != nullptr && ns->cookie != *peer(k).cookie;
        });
    };
    const auto now = clock_.realtime();
    catalog_.set_ask_new(true);
    scan_mounts(false);
    catalog_.begin_round();
    catalog_.ask_unassigned({}, claimed);
    if (!claimed()) {
        catalog_.restart_pass();
        pass_started_usec_ = now;
        while (!catalog_.scan_proc(SIZE_MAX, now)) {
        }
        verdicts_due_ = true;
        catalog_.begin_round();
        catalog_.ask_unassigned({}, claimed);
    }
    std::vector<Entry> kept;
    for (const auto& e : truth) {
        const auto* ns = gone.count(e.nsid) ? catalog_.by_nsid(e.nsid) : nullptr;
        if (ns != nullptr && !ns->cookie_is_inode && ns->cookie != *peer(e.nsid).cookie) {
            ++stats_.replaced;
            continue; // dropped first, so its peer's death is recorded; then added anew
        }
        kept.push_back(e);
    }
    if (kept.size() == truth.size())
        return;
    auto diff = registry_.resync(registry::kSelf, std::move(kept), clock_.realtime());
    identify(diff);
    changes.append(std::move(diff));
}

Engine::Applied Engine::apply_events() {
    auto read = apply_batch(false);
    Applied out{read.changes.size(), 0, read.lost, read.events};
    for (const auto& c : read.changes.listed())
        out.deaths += c.kind == registry::ChangeKind::Del && c.observer == registry::kSelf;
    show(std::move(read.changes));
    return out;
}

Engine::Received Engine::apply_batch(bool reconcile) {
    Received out;
    foreign_cache_.clear();
    auto events = kernel_.receive();
    // After a loss every event read is older than the snapshot the caller takes next, which
    // supersedes them: applying them across the hole could only invent deaths.
    if (events.lost) {
        out.lost = true;
        return out;
    }
    registry::Batch batch;
    batch.reconcile = reconcile;
    batch.now_usec = clock_.realtime();
    // The ops are kept in place (no copy per event): those of other tables go in self scope.
    batch.ops = std::move(events.ops);
    std::size_t kept = 0;
    for (auto& op : batch.ops) {
        if (op.observer == registry::kSelf) {
            ++out.events;
        } else if (!config_.host) {
            continue;
        } else if (op.kind == registry::Op::Kind::New) {
            // Events never name the peer: a foreign NEW learns self's id for it from o's table.
            if (const auto* t = foreign_table(op.observer))
                if (auto it = t->find(op.nsid); it != t->end() && it->second >= 0)
                    op.current_nsid = it->second;
        }
        batch.ops[kept++] = op;
    }
    batch.ops.resize(kept);
    out.changes =
        registry_.apply(batch, [this](Observer o, Nsid nsid) { return is_assigned(o, nsid); });
    // Tables read before the batch named only the peers self knew then: read new ones anew.
    foreign_cache_.clear();
    identify(out.changes);
    if (config_.host)
        read_new_observers(out.changes);
    return out;
}

std::optional<Nsid> Engine::nsid_of_name(const std::string& name) {
    // A name is one path component: no traversal out of the netns directory.
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
        return std::nullopt;
    auto fd = netns::open_namespace(config_.roots.netns_dir + "/" + name);
    if (!fd)
        return std::nullopt;
    const int raw = fd->get();
    auto ids = kernel_.ids_of(std::span<const int>(&raw, 1));
    if (!ids || ids->empty())
        return std::nullopt;
    return (*ids)[0];
}

} // namespace nsidd::mirror
