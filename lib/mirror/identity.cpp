// SPDX-License-Identifier: LGPL-2.1-or-later
// What discovery learns of each peer: identities onto self's rows, verdicts on what holds each
// peer alive, and the fd search for peers nothing else holds.
#include "mirror/engine.hpp"

#include <algorithm>
#include <set>
#include <unordered_set>

#include "netns/owner.hpp"
#include "util/file.hpp"

namespace nsidd::mirror {
namespace {

// Ids taken from saved ids, checked against the kernel after each discovery pass.
constexpr std::size_t kVerifyPerPass = 16;
// The fds of every process are searched again for the same unheld peers after this long.
constexpr std::uint64_t kFdSearchAgainUsec = 60'000'000;
// The fds of every process are searched at least this often for namespaces without an id.
constexpr std::uint64_t kUnknownSearchUsec = 300'000'000;

} // namespace

registry::Identity Engine::identity_of(const netns::Namespace& ns) {
    registry::Identity id;
    if (!ns.cookie_is_inode)
        id.cookie = ns.cookie;
    id.inode = ns.inode;
    id.names = ns.names;
    id.former_names = ns.former_names;
    if (ns.pid)
        id.pid = *ns.pid;
    // Counted at the end of each pass; a process met in the pass under way counts already.
    id.holders.processes = std::max<std::uint32_t>(ns.processes, ns.pid ? 1 : 0);
    id.holders.comm = ns.comm;
    id.holders.mounts = ns.mounts;
    id.holders.other_mounts = ns.other_mounts;
    id.holders.copies = ns.copies;
    id.holders.also_in = ns.also_in;
    id.owner = ns.owner;
    return id;
}

void Engine::drop_distrusted() {
    // Saved ids were found wrong: identities attached through them may name the wrong peer.
    const auto cookies = catalog_.take_distrusted();
    if (cookies.empty())
        return;
    const std::set<std::uint64_t> bad(cookies.begin(), cookies.end());
    std::vector<Nsid> rows;
    for (const auto& [nsid, known] : peers_)
        if (known.identity.cookie && bad.count(*known.identity.cookie))
            rows.push_back(nsid);
    for (const Nsid nsid : rows) {
        set_peer(nsid, {});
        judge_held(nsid, false);
        unidentified_.insert(nsid);
    }
    if (!refresh_due_)
        catalog_.begin_round();
    refresh_due_ = true;
}

void Engine::attach_changed() {
    drop_distrusted();
    const auto& rows = registry_.table(registry::kSelf)->rows;
    for (const auto cookie : catalog_.take_changed()) {
        const auto it = catalog_.namespaces().find(cookie);
        if (it == catalog_.namespaces().end() || !it->second.nsid)
            continue;
        const auto nsid = *it->second.nsid;
        const auto row = rows.find(nsid);
        if (row == rows.end())
            continue; // its NEW is still on the way; identify() attaches it then
        if (const auto& had = peer(nsid).cookie; had && *had != cookie) {
            // The row is the previous holder's, which is dead (ids are unique among live
            // peers). Its DEL and the new NEW may still be on the way, or were lost: a resync
            // settles which, and records the death if they were.
            resync_due_ = true;
            continue;
        }
        set_peer(nsid, identity_of(it->second));
        // Found through a process or a mount: held now.
        judge_held(nsid, true);
        touch(nsid);
    }
}

void Engine::judge_held(Nsid nsid, bool held) {
    if (registry_.table(registry::kSelf)->rows.count(nsid))
        peers_[nsid].held = held;
    unheld_.erase(nsid);
}

void Engine::forget_dead(const registry::Change& c) {
    // What was known of it leaves with its row: into its death record, and with its change
    // when that is shown (its id may name a new peer at once).
    Peer gone;
    if (auto* known = peers_.get(c.entry.nsid)) {
        gone = std::move(*known);
        peers_.erase(c.entry.nsid);
    }
    // Dead: its cookie is never seen again.
    if (gone.identity.cookie)
        catalog_.forget(*gone.identity.cookie);
    else if (const auto* ns = catalog_.by_nsid(c.entry.nsid))
        catalog_.forget(ns->cookie);
    if (const auto* v = unheld_.get(c.entry.nsid); v && v->row_since == c.entry.since_usec)
        unheld_.erase(c.entry.nsid);
    // The last state decided: a peer being torn down (its mount gone, its DEL on the way) is
    // unknown for its last moments.
    registry_.describe_death(c.entry.nsid, c.entry.since_usec, gone.identity, gone.decided);
    pending_down_.erase(c.entry.nsid);
    departed_.emplace_back(c.entry.nsid, c.entry.since_usec, std::move(gone));
}

const Peer* Engine::departed(Nsid nsid, std::uint64_t since_usec, std::size_t& next) const {
    // Shown in the order they left: the one asked for is the next after the last one found, so a
    // burst is one pass (the search goes round, should the orders ever differ).
    for (std::size_t i = 0; i < departed_.size(); ++i) {
        const auto at = (next + i) % departed_.size();
        if (const auto& [id, since, peer] = departed_[at]; id == nsid && since == since_usec) {
            next = at + 1;
            return &peer;
        }
    }
    return nullptr;
}

void Engine::identify(const registry::Changes& changes) {
    bool unexplained = false;
    const auto& rows = registry_.table(registry::kSelf)->rows;
    for (const auto& c : changes.listed()) { // (every change of self's table)
        if (c.observer != registry::kSelf)
            continue;
        if (c.kind == registry::ChangeKind::Del || c.kind == registry::ChangeKind::Purge ||
            (c.kind == registry::ChangeKind::Resync && c.removed)) {
            forget_dead(c);
            continue;
        }
        if (!rows.count(c.entry.nsid) || peer(c.entry.nsid).cookie)
            continue;
        if (const auto* ns = catalog_.by_nsid(c.entry.nsid)) {
            set_peer(c.entry.nsid, identity_of(*ns));
            judge_held(c.entry.nsid, true);
            touch(c.entry.nsid);
        } else {
            unexplained = true;
            unidentified_.insert(c.entry.nsid);
        }
    }
    // A known namespace may have just been given an id: ask those that had none, soon.
    if (unexplained) {
        // A round in progress may already have asked the namespace that got the id: another
        // round follows it (one, however many ids arrive meanwhile).
        if (!refresh_due_)
            catalog_.begin_round();
        else
            another_round_ = true;
        refresh_due_ = true;
    }
    attach_changed();
}

bool Engine::unexplained_rows() {
    // Every row that lacked an identity when it changed is a candidate: drop those that found
    // theirs, or are gone. O(candidates), not O(rows): called at every mount change.
    const auto& rows = registry_.table(registry::kSelf)->rows;
    for (auto it = unidentified_.begin(); it != unidentified_.end();) {
        const auto& peer = this->peer(*it);
        if (!rows.count(*it) || peer.cookie || peer.inode)
            it = unidentified_.erase(it);
        else
            ++it;
    }
    return !unidentified_.empty();
}

void Engine::scan_mounts(bool full) {
    mounts_scanned_usec_ = clock_.realtime();
    catalog_.scan_mounts(mounts_scanned_usec_, full);
}

void Engine::discover_mounts() {
    catalog_.set_ask_new(unexplained_rows());
    scan_mounts(false);
    attach_changed();
}

bool Engine::refresh_ids(std::uint64_t deadline_usec) {
    return refresh_ids([this, deadline_usec] { return clock_.monotonic() >= deadline_usec; });
}

bool Engine::refresh_ids(const std::function<bool()>& out_of_time) {
    const auto explained = [this] {
        attach_changed();
        return !unexplained_rows();
    };
    bool ended = false;
    if (refresh_due_ && catalog_.ask_unassigned(out_of_time, explained)) {
        ended = true;
        refresh_due_ = std::exchange(another_round_, false);
        if (refresh_due_)
            catalog_.begin_round();
    }
    attach_changed();
    return ended;
}

bool Engine::discover_processes(std::size_t budget, bool mounts) {
    const auto now = clock_.realtime();
    catalog_.set_ask_new(unexplained_rows());
    if (!catalog_.pass_running()) {
        pass_started_usec_ = now;
        // The first pass reads the mounts too: a verdict needs both kinds of holder.
        if (mounts || mounts_scanned_usec_ == 0)
            scan_mounts(false);
        catalog_.scan_dangling();
    }
    const bool done = catalog_.scan_proc(budget, now);
    if (done)
        catalog_.verify_saved_ids(kVerifyPerPass);
    attach_changed();
    if (!done)
        return false;
    renew_verdicts();
    recheck_held_without_id();
    return true;
}

namespace {

// Nothing discovery can see holds the peer now: no process, no mount, no name. Its identity
// without them (its names become former names; fds are the search's to say), or nullopt
// when it shows none already.
std::optional<registry::Identity> without_holders(const registry::Identity& peer) {
    if (peer.names.empty() && !peer.pid && peer.holders.processes == 0 &&
        peer.holders.mounts.empty() && peer.holders.other_mounts.empty())
        return std::nullopt;
    auto id = peer;
    if (!id.names.empty()) {
        id.former_names = Strings::merge(id.former_names, id.names);
        id.names = {};
    }
    id.pid.reset();
    id.holders = registry::Holders{}; // gone: not shown
    id.holders.fds = peer.holders.fds;
    return id;
}

} // namespace

void Engine::renew_verdicts() {
    // A row whose peer nothing held in the pass just ended is unheld since that pass began, or
    // since earlier if it already was.
    UnheldRows next; // rows come in ascending order: so do its records
    next.reserve(unheld_.size());
    std::vector<std::pair<Nsid, registry::Identity>> unheld;
    std::vector<std::pair<Nsid, bool>> flips; // rows whose held flag changes
    for (const auto& [nsid, row] : registry_.table(registry::kSelf)->rows) {
        const auto since = row.entry.since_usec;
        const auto* known = peers_.get(nsid);
        const bool held = known != nullptr && known->held;
        const auto* was = unheld_.get(nsid);
        if (was != nullptr && was->row_since != since)
            was = nullptr; // a former row's, under a reused id
        if (catalog_.by_nsid(nsid) != nullptr) {
            if (!held) { // unheld or undecided before: its state may change
                flips.emplace_back(nsid, true);
                touch(nsid);
            }
            continue;
        }
        if (auto id = without_holders(peer(nsid)))
            unheld.emplace_back(nsid, std::move(*id));
        if (since > pass_started_usec_ || since > mounts_scanned_usec_ || refresh_due_) {
            // Newer than the pass or the last look at the mounts (either may have missed its
            // holder), or ids still being asked for: no verdict until discovery covers it.
            if (was != nullptr)
                next.emplace(nsid, *was);
            continue;
        }
        next.emplace(
            nsid, Unheld{since, was != nullptr ? was->unheld_since : resumed_unheld(peer(nsid))});
        if (held)
            flips.emplace_back(nsid, false);
        if (was == nullptr || held)
            touch(nsid);
    }
    unheld_ = std::move(next);
    for (const auto& [nsid, held] : flips)
        peers_[nsid].held = held;
    for (auto& [nsid, id] : unheld)
        set_peer(nsid, std::move(id));
    // Peers nothing visible holds: search the fds of every process for them. A search costs
    // the kernel ~3 us per fd on the host (bench/README.md): again only when that set of peers
    // changed, or its last search is a minute old.
    std::set<std::pair<Nsid, std::uint64_t>> unheld_now; // rows, not ids: ids are reused
    for (const auto& [nsid, v] : unheld_)
        unheld_now.emplace(nsid, v.row_since);
    const auto now = clock_.realtime();
    if (!unheld_now.empty() &&
        (unheld_now != fd_searched_for_ || now - fd_searched_usec_ >= kFdSearchAgainUsec))
        fds_due_ = true;
    // Namespaces without an id that only an fd holds are seen by searches alone: one after
    // the first pass, then every few minutes (every minute while some are known).
    if (now - fd_searched_usec_ >=
        (held_without_id_.empty() ? kUnknownSearchUsec : kFdSearchAgainUsec))
        fds_due_ = true;
}

std::uint64_t Engine::resumed_unheld(const registry::Identity& peer) {
    const auto saved = peer.cookie ? saved_unheld_.find(*peer.cookie) : saved_unheld_.end();
    if (saved == saved_unheld_.end())
        return pass_started_usec_;
    const auto since = std::min(pass_started_usec_, saved->second);
    saved_unheld_.erase(saved); // once: a later unheld spell starts afresh
    return since;
}

bool Engine::names_self(Observer observer, const registry::Entry& entry) const {
    if (observer == registry::kSelf || entry.current_nsid)
        return false;
    const auto it = own_ids_.find(observer);
    return it != own_ids_.end() && it->second == entry.nsid;
}

void Engine::set_peer(Nsid nsid, registry::Identity id) {
    const auto& rows = registry_.table(registry::kSelf)->rows;
    const auto row = rows.find(nsid);
    if (row == rows.end())
        return;
    if (const auto down = pending_down_.find(nsid); down != pending_down_.end() && id.cookie) {
        if (*id.cookie != down->second)
            record_death_while_down(nsid, down->second); // its id names another peer now
        pending_down_.erase(down);
    }
    // First seen: kept by the row while its peer stays the same, else from the id cache.
    const auto& had = peer(nsid);
    if (id.cookie && had.cookie == id.cookie && had.first_seen_usec)
        id.first_seen_usec = had.first_seen_usec;
    else if (const auto seen = id.cookie ? first_seen_.find(*id.cookie) : first_seen_.end();
             seen != first_seen_.end()) {
        if (seen->second < row->second.entry.since_usec)
            id.first_seen_usec = seen->second;
        first_seen_.erase(seen);
    }
    // Known only now (an fd search identified it): if it was unheld before a restart too, its
    // verdict's clock runs on from then.
    if (auto* v = unheld_.get(nsid); v != nullptr && v->row_since == row->second.entry.since_usec)
        v->unheld_since = std::min(v->unheld_since, resumed_unheld(id));
    auto& known = peers_[nsid].identity;
    if (known == id)
        return;
    known = std::move(id);
    touch(nsid, true);
}

std::optional<Owner> Engine::fd_holder_owner(std::int32_t pid) const {
    const auto text =
        read_file(config_.roots.proc_dir + "/" + std::to_string(pid) + "/cgroup", 64u << 10);
    return text ? netns::parse_cgroup_owner(*text) : std::nullopt;
}

netns::FdSearch Engine::start_fd_search() {
    netns::FdSearch search;
    const auto& rows = registry_.table(registry::kSelf)->rows;
    fd_searched_for_.clear();
    fd_searched_usec_ = clock_.realtime();
    for (const auto& [nsid, v] : unheld_) {
        fd_searched_for_.emplace(nsid, v.row_since);
        if (!rows.count(nsid))
            continue;
        const auto& peer = this->peer(nsid);
        search.identify |= !peer.inode && !peer.cookie;
        if (!peer.inode)
            continue;
        search.inodes.insert(*peer.inode);
        if (peer.cookie) // NS_GET_ID: sockets can be tied to it
            search.sockets.emplace(*peer.cookie, *peer.inode);
    }
    // Namespaces only an fd holds and self's table has no id for: looked for at every search.
    search.unknown_nsfs = true;
    if (search.identify || search.unknown_nsfs) {
        // Namespaces whose identity is known need no fd opened on them.
        for (const auto& [cookie, ns] : catalog_.namespaces()) {
            search.known_inodes.insert(ns.inode);
            if (!ns.cookie_is_inode)
                search.known_cookies.insert(cookie);
        }
        for (const auto& [nsid, known] : peers_) {
            if (known.identity.inode)
                search.known_inodes.insert(*known.identity.inode);
            if (known.identity.cookie)
                search.known_cookies.insert(*known.identity.cookie);
        }
        search.known_inodes.insert(catalog_.self_inode());
        search.known_cookies.insert(catalog_.self_cookie());
    }
    search.no_copies_from = no_copies_from_;
    fds_due_ = false;
    fd_search_running_ = true;
    return search;
}

void Engine::fd_search_abandoned() {
    fd_search_running_ = false;
    fd_searched_for_.clear(); // due again at the next pass that leaves peers unheld
}

std::vector<std::pair<std::uint64_t, std::uint64_t>>
Engine::identify_held(std::vector<netns::HeldNamespace>& found) {
    // Self's id of each namespace the search met through an fd only: a row with that id and
    // no identity is that namespace (ids are unique among live namespaces).
    std::vector<int> fds;
    for (const auto& n : found)
        fds.push_back(n.fd.get());
    const auto ids = fds.empty() ? Result<std::vector<std::optional<Nsid>>>() : kernel_.ids_of(fds);
    const auto& rows = registry_.table(registry::kSelf)->rows;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> without_id; // (inode, cookie)
    for (std::size_t i = 0; ids && i < ids->size() && i < found.size(); ++i) {
        if (!(*ids)[i]) {
            without_id.emplace_back(found[i].inode, found[i].cookie);
            continue;
        }
        const auto& had = peer(*(*ids)[i]);
        if (!rows.count(*(*ids)[i]) || had.cookie || had.inode)
            continue;
        auto id = had;
        id.inode = found[i].inode;
        if (found[i].cookie)
            id.cookie = found[i].cookie;
        set_peer(*(*ids)[i], std::move(id));
    }
    found.clear(); // closes every fd: nothing is kept open in a watched namespace
    return without_id;
}

void Engine::fd_search_done(netns::FdFound found) {
    fd_search_running_ = false;
    fd_copies_denied_ += found.copies_denied;
    for (const auto& s : found.swapped)
        no_copies_from_.insert(s.uid);
    auto without_id = identify_held(found.identified);
    // Met while not identifying: known rows' namespaces are none of these (they were known
    // when the search began), so they have no id.
    without_id.insert(without_id.end(), found.unknown.begin(), found.unknown.end());
    if (!found.complete) {
        fd_searched_for_.clear();
        return;
    }
    fd_covered_usec_ = fd_searched_usec_;
    note_held_without_id(without_id, found);
    // Each unheld peer's fd holders are what the search met; a held one has none to show.
    const auto& rows = registry_.table(registry::kSelf)->rows;
    std::vector<std::pair<Nsid, registry::Identity>> updates;
    for (const auto& [nsid, row] : rows) {
        const bool unheld = unheld_.get(nsid) != nullptr;
        std::vector<registry::FdHolder> fds;
        const auto& peer = this->peer(nsid);
        if (unheld && peer.inode)
            if (const auto it = found.holders.find(*peer.inode); it != found.holders.end())
                for (const auto& h : it->second)
                    fds.push_back(registry::FdHolder{h.pid, h.comm, h.fd, h.socket});
        if (unheld)
            touch(nsid); // a search that found nothing may make it pinned now
        if (fds != *peer.holders.fds) {
            auto id = peer;
            // Whose it is, when no process inside ever said: the fd holder's.
            if (!id.owner && !fds.empty())
                if (auto owner = fd_holder_owner(fds.front().pid))
                    id.owner = Shared(std::move(*owner));
            id.holders.fds =
                fds.empty() ? Shared<std::vector<registry::FdHolder>>() : Shared(std::move(fds));
            updates.emplace_back(nsid, std::move(id));
        }
    }
    for (auto& [nsid, id] : updates)
        set_peer(nsid, std::move(id));
}

} // namespace nsidd::mirror
