// SPDX-License-Identifier: LGPL-2.1-or-later
// What discovery learns of each peer: identities onto self's rows, verdicts on what holds each
// peer alive, and the saved ids that spare a restart most questions.
#include "mirror/engine.hpp"

#include <algorithm>
#include <set>
#include <unordered_set>

#include <fnmatch.h>

#include "util/file.hpp"

namespace nsidd::mirror {
namespace {

// Ids taken from saved ids, checked against the kernel after each discovery pass.
constexpr std::size_t kVerifyPerPass = 16;
// The fds of every process are searched again for the same unheld peers after this long.
constexpr std::uint64_t kFdSearchAgainUsec = 60'000'000;

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
    id.holders.pid = id.pid;
    id.holders.comm = ns.comm;
    id.holders.mounts = ns.mounts;
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
    for (const auto& [nsid, row] : registry_.table(registry::kSelf)->rows)
        if (row.entry.peer.cookie && bad.count(*row.entry.peer.cookie))
            rows.push_back(nsid);
    for (const Nsid nsid : rows) {
        set_peer(nsid, {});
        verdicts_.erase(nsid);
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
        if (const auto& had = row->second.entry.peer.cookie; had && *had != cookie) {
            // The row is the previous holder's, which is dead (ids are unique among live
            // peers). Its DEL and the new NEW may still be on the way, or were lost: a resync
            // settles which, and records the death if they were.
            resync_due_ = true;
            continue;
        }
        set_peer(nsid, identity_of(it->second));
        // Found through a process or a mount: held now.
        verdicts_[nsid] = Verdict{row->second.entry.since_usec, 0};
        touch(nsid);
    }
}

void Engine::forget_dead(const registry::Change& c) {
    // Dead: its cookie is never seen again, and its id may name a new peer at once.
    if (c.entry.peer.cookie)
        catalog_.forget(*c.entry.peer.cookie);
    else if (const auto* ns = catalog_.by_nsid(c.entry.nsid))
        catalog_.forget(ns->cookie);
    if (auto v = verdicts_.find(c.entry.nsid);
        v != verdicts_.end() && v->second.row_since == c.entry.since_usec)
        verdicts_.erase(v);
    if (auto s = shown_.find(c.entry.nsid);
        s != shown_.end() && s->second.row_since == c.entry.since_usec)
        shown_.erase(s);
}

void Engine::identify(const std::vector<registry::Change>& changes) {
    bool unexplained = false;
    const auto& rows = registry_.table(registry::kSelf)->rows;
    for (const auto& c : changes) {
        if (c.observer != registry::kSelf)
            continue;
        if (c.kind == registry::ChangeKind::Del || c.kind == registry::ChangeKind::Purge ||
            (c.kind == registry::ChangeKind::Resync && c.removed)) {
            forget_dead(c);
            continue;
        }
        const auto row = rows.find(c.entry.nsid);
        if (row == rows.end() || row->second.entry.peer.cookie)
            continue;
        if (const auto* ns = catalog_.by_nsid(c.entry.nsid)) {
            set_peer(c.entry.nsid, identity_of(*ns));
            verdicts_[c.entry.nsid] = Verdict{row->second.entry.since_usec, 0};
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
        const auto row = rows.find(*it);
        if (row == rows.end() || row->second.entry.peer.cookie || row->second.entry.peer.inode)
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

void Engine::refresh_ids(std::uint64_t deadline_usec) {
    refresh_ids([this, deadline_usec] { return clock_.monotonic() >= deadline_usec; });
}

void Engine::refresh_ids(const std::function<bool()>& out_of_time) {
    const auto explained = [this] {
        attach_changed();
        return !unexplained_rows();
    };
    if (refresh_due_ && catalog_.ask_unassigned(out_of_time, explained)) {
        refresh_due_ = std::exchange(another_round_, false);
        if (refresh_due_)
            catalog_.begin_round();
    }
    attach_changed();
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
    return true;
}

void Engine::touch_changed(const std::map<Nsid, Verdict>& was, const std::map<Nsid, Verdict>& is) {
    // Rows whose verdict changed may have changed state.
    for (auto a = was.begin(), b = is.begin(); a != was.end() || b != is.end();) {
        if (b == is.end() || (a != was.end() && a->first < b->first)) {
            touch((a++)->first);
        } else if (a == was.end() || b->first < a->first) {
            touch((b++)->first);
        } else {
            if (a->second.row_since != b->second.row_since ||
                a->second.unheld_since != b->second.unheld_since)
                touch(a->first);
            ++a, ++b;
        }
    }
}

void Engine::renew_verdicts() {
    // A row whose peer nothing held in the pass just ended is unheld since that pass began, or
    // since earlier if it already was.
    std::map<Nsid, Verdict> next;
    std::vector<std::pair<Nsid, registry::Identity>> unheld;
    for (const auto& [nsid, row] : registry_.table(registry::kSelf)->rows) {
        const auto since = row.entry.since_usec;
        if (catalog_.by_nsid(nsid) != nullptr) {
            next.emplace(nsid, Verdict{since, 0});
            continue;
        }
        if (const auto& peer = row.entry.peer; !peer.names.empty() || peer.pid ||
                                               peer.holders.processes > 0 ||
                                               !peer.holders.mounts->empty()) {
            // Nothing discovery can see holds it now: no process, no mount, no name.
            auto id = peer;
            for (const auto& n : id.names)
                id.former_names.push_back(n);
            std::sort(id.former_names.begin(), id.former_names.end());
            id.former_names.erase(std::unique(id.former_names.begin(), id.former_names.end()),
                                  id.former_names.end());
            id.names.clear();
            id.pid.reset();
            id.holders = registry::Holders{{}, {}, {}, {}, peer.holders.fds};
            unheld.emplace_back(nsid, std::move(id));
        }
        if (since > pass_started_usec_ || since > mounts_scanned_usec_ || refresh_due_) {
            // Newer than the pass or the last look at the mounts (either may have missed its
            // holder), or ids still being asked for: no verdict until discovery covers it.
            if (auto v = verdicts_.find(nsid); v != verdicts_.end() && v->second.row_since == since)
                next.emplace(nsid, v->second);
            continue;
        }
        const auto v = verdicts_.find(nsid);
        const bool still =
            v != verdicts_.end() && v->second.row_since == since && v->second.unheld_since != 0;
        next.emplace(nsid, Verdict{since, still ? v->second.unheld_since : pass_started_usec_});
    }
    touch_changed(verdicts_, next);
    verdicts_ = std::move(next);
    for (auto& [nsid, id] : unheld)
        set_peer(nsid, id);
    // Peers nothing visible holds: search the fds of every process for them. A search costs
    // the kernel ~3 us per fd on the host (bench/README.md): again only when that set of peers
    // changed, or its last search is a minute old.
    std::set<Nsid> unheld_now;
    for (const auto& [nsid, v] : verdicts_)
        if (v.unheld_since != 0)
            unheld_now.insert(nsid);
    const auto now = clock_.realtime();
    if (!unheld_now.empty() &&
        (unheld_now != fd_searched_for_ || now - fd_searched_usec_ >= kFdSearchAgainUsec))
        fds_due_ = true;
}

bool Engine::names_self(Observer observer, const registry::Entry& entry) const {
    if (observer == registry::kSelf || entry.current_nsid)
        return false;
    const auto it = own_ids_.find(observer);
    return it != own_ids_.end() && it->second == entry.nsid;
}

registry::Entry Engine::view(Observer observer, const registry::Entry& entry) const {
    if (names_self(observer, entry)) {
        registry::Entry out = entry;
        out.peer = {};
        if (const auto cookie = catalog_.self_cookie())
            out.peer.cookie = cookie;
        if (const auto inode = catalog_.self_inode())
            out.peer.inode = inode;
        return out;
    }
    if (observer == registry::kSelf || !entry.current_nsid)
        return entry;
    registry::Entry out = entry;
    const auto& rows = registry_.table(registry::kSelf)->rows;
    if (const auto it = rows.find(*entry.current_nsid); it != rows.end())
        out.peer = it->second.entry.peer;
    return out;
}

bool Engine::on_stale_path(const std::vector<std::string>& mounts) const {
    for (const auto& m : mounts)
        for (const auto& glob : config_.stale_mount_paths)
            if (::fnmatch(glob.c_str(), m.c_str(), FNM_PATHNAME) == 0)
                return true;
    return false;
}

PeerState Engine::state(Observer observer, const registry::Entry& entry) const {
    if (names_self(observer, entry))
        return PeerState::Active; // this process is inside
    const auto peer = registry::peer_of(observer, entry);
    if (!peer)
        return PeerState::Unknown;
    const auto& rows = registry_.table(registry::kSelf)->rows;
    const auto row = rows.find(*peer);
    const auto s = shown_.find(*peer);
    if (row == rows.end() || s == shown_.end() ||
        s->second.row_since != row->second.entry.since_usec)
        return PeerState::Unknown;
    return s->second.state;
}

PeerState Engine::live_state(Nsid nsid, const registry::Entry& entry, std::uint64_t now,
                             std::uint64_t& deadline) const {
    deadline = 0;
    const auto v = verdicts_.find(nsid);
    if (v == verdicts_.end() || v->second.row_since != entry.since_usec)
        return PeerState::Unknown;
    const auto grace = config_.orphan_grace_usec;
    if (v->second.unheld_since == 0) {
        const auto* ns = catalog_.by_nsid(nsid);
        if (ns == nullptr || ns->pid || ns->processes > 0 || !ns->mounted())
            return PeerState::Active; // a process held it at the last look
        // Bind mounts only: a stale-mount path that has outlived every process by the grace
        // period is the leak CNI leaves behind.
        if (ns->no_process_since_usec == 0 || !on_stale_path(*ns->mounts))
            return PeerState::Mounted;
        if (now - ns->no_process_since_usec >= grace)
            return PeerState::StaleMount;
        deadline = ns->no_process_since_usec + grace;
        return PeerState::Mounted;
    }
    if (!entry.peer.holders.fds.empty())
        return PeerState::FdHeld;
    if (now - v->second.unheld_since >= grace)
        return PeerState::Pinned;
    deadline = v->second.unheld_since + grace;
    return PeerState::Unknown;
}

void Engine::set_peer(Nsid nsid, const registry::Identity& id) {
    if (registry_.set_peer(nsid, id))
        touch(nsid, true);
}

void Engine::touch(Nsid nsid, bool identity) {
    auto [it, added] = touched_.emplace(nsid, identity);
    if (!added && identity)
        it->second = true;
}

std::uint64_t Engine::next_state_change_usec() const noexcept {
    return deadlines_.empty() ? 0 : deadlines_.begin()->first;
}

std::vector<registry::Change> Engine::take_updates() {
    const auto now = clock_.realtime();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        touch(deadlines_.begin()->second);
        deadlines_.erase(deadlines_.begin());
    }
    std::vector<registry::Change> out;
    const auto& rows = registry_.table(registry::kSelf)->rows;
    for (const auto& [nsid, identity] : touched_) {
        const auto row = rows.find(nsid);
        if (row == rows.end()) {
            shown_.erase(nsid);
            continue;
        }
        const auto& entry = row->second.entry;
        std::uint64_t deadline = 0;
        const auto now_state = live_state(nsid, entry, now, deadline);
        if (deadline != 0)
            deadlines_.emplace(deadline, nsid);
        auto shown = shown_.find(nsid);
        const bool fresh = shown == shown_.end() || shown->second.row_since != entry.since_usec;
        const auto had = fresh ? PeerState::Unknown : shown->second.state;
        if (now_state == PeerState::Unknown)
            shown_.erase(nsid);
        else
            shown_[nsid] = Shown{entry.since_usec, now_state};
        if (!identity && had == now_state)
            continue;
        out.push_back(registry::Change{registry::ChangeKind::Update, registry::kSelf, entry});
        // Rows of other tables show this peer's identity and state.
        if (config_.host)
            registry_.for_each_row_naming(nsid, [&](Observer o, const registry::Entry& e) {
                out.push_back(registry::Change{registry::ChangeKind::Update, o, e});
            });
    }
    touched_.clear();
    return out;
}

bool Engine::discover_fds(std::size_t budget) {
    if (!fds_due_)
        return true;
    const auto& rows = registry_.table(registry::kSelf)->rows;
    if (!fd_scan_.running()) {
        std::unordered_set<std::uint64_t> inodes;
        fd_searched_for_.clear();
        fd_searched_usec_ = clock_.realtime();
        for (const auto& [nsid, v] : verdicts_) {
            if (v.unheld_since == 0)
                continue;
            fd_searched_for_.insert(nsid);
            if (const auto row = rows.find(nsid); row != rows.end() && row->second.entry.peer.inode)
                inodes.insert(*row->second.entry.peer.inode);
        }
        fd_scan_.start(std::move(inodes));
    }
    if (!fd_scan_.step(budget))
        return false;
    fds_due_ = false;
    // Each unheld peer's fd holders are what the search met; a held one has none to show.
    std::vector<std::pair<Nsid, registry::Identity>> updates;
    for (const auto& [nsid, row] : rows) {
        std::vector<registry::FdHolder> fds;
        const auto v = verdicts_.find(nsid);
        if (v != verdicts_.end() && v->second.unheld_since != 0 && row.entry.peer.inode)
            if (const auto it = fd_scan_.found().find(*row.entry.peer.inode);
                it != fd_scan_.found().end())
                for (const auto& h : it->second)
                    fds.push_back(registry::FdHolder{h.pid, h.comm, h.fd});
        if (fds != row.entry.peer.holders.fds) {
            auto id = row.entry.peer;
            id.holders.fds = std::move(fds);
            updates.emplace_back(nsid, std::move(id));
        }
    }
    for (auto& [nsid, id] : updates)
        set_peer(nsid, id);
    return true;
}

std::array<std::size_t, static_cast<std::size_t>(PeerState::Count)> Engine::state_counts() const {
    std::array<std::size_t, static_cast<std::size_t>(PeerState::Count)> out{};
    for (const auto& [nsid, row] : registry_.table(registry::kSelf)->rows)
        ++out[static_cast<std::size_t>(state(registry::kSelf, row.entry))];
    return out;
}

std::array<std::uint64_t, static_cast<std::size_t>(PeerState::Count)> Engine::oldest_since() const {
    std::array<std::uint64_t, static_cast<std::size_t>(PeerState::Count)> out{};
    for (const auto& [nsid, row] : registry_.table(registry::kSelf)->rows) {
        auto& oldest = out[static_cast<std::size_t>(state(registry::kSelf, row.entry))];
        if (oldest == 0 || row.entry.since_usec < oldest)
            oldest = row.entry.since_usec;
    }
    return out;
}

netns::IdCacheOrigin Engine::origin() {
    if (boot_id_.empty()) {
        if (auto id = read_file(config_.roots.proc_dir + "/sys/kernel/random/boot_id", 64)) {
            boot_id_ = std::move(*id);
            while (!boot_id_.empty() && (boot_id_.back() == '\n' || boot_id_.back() == ' '))
                boot_id_.pop_back();
        }
    }
    return {boot_id_, catalog_.self_cookie()};
}

bool Engine::load_ids(const std::string& path) {
    auto key = origin();
    if (key.boot_id.empty() || key.self_cookie == 0)
        return false; // no NS_GET_ID: inodes are no key across a restart
    const auto text = read_file(path);
    if (!text)
        return false;
    auto ids = netns::parse_id_cache(*text, key);
    if (!ids)
        return false;
    catalog_.use_saved_ids(std::move(*ids));
    return true;
}

Result<void> Engine::save_ids(const std::string& path) {
    auto key = origin();
    if (key.boot_id.empty() || key.self_cookie == 0 || catalog_.ids_version() == saved_ids_version_)
        return {};
    auto written = write_file_atomic(path, netns::format_id_cache(key, catalog_.saved_ids()), 0600);
    if (written)
        saved_ids_version_ = catalog_.ids_version();
    return written;
}

} // namespace nsidd::mirror
