// SPDX-License-Identifier: LGPL-2.1-or-later
// Peer states as served: the verdicts and holders settled into a state per row, published as
// updates when they change (docs/design.md, "Data flow", settling), and the view of a row.
#include "mirror/engine.hpp"

#include <algorithm>

#include "util/runtimes.hpp"

namespace nsidd::mirror {

const registry::Identity& Engine::peer(Nsid nsid) const noexcept {
    static const registry::Identity none{};
    const auto* known = peers_.get(nsid);
    return known != nullptr ? known->identity : none;
}

View Engine::view(Observer observer, const registry::Entry& entry, const Peer* gone) const {
    View shown{entry, {}, 0};
    if (names_self(observer, entry)) {
        if (const auto cookie = catalog_.self_cookie())
            shown.peer.cookie = cookie;
        if (const auto inode = catalog_.self_inode())
            shown.peer.inode = inode;
        return shown;
    }
    // Self's row, or the row of self's that names the same peer.
    const auto peer = registry::peer_of(observer, entry);
    const auto* known = gone != nullptr ? gone : peer ? peers_.get(*peer) : nullptr;
    if (known == nullptr)
        return shown;
    shown.peer = known->identity;
    shown.leaking_since_usec = known->leaking_since_usec;
    if (observer == registry::kSelf && shown.peer.first_seen_usec &&
        *shown.peer.first_seen_usec < entry.since_usec)
        shown.since_usec = *shown.peer.first_seen_usec; // first seen before a restart
    return shown;
}

bool Engine::leak_prone(const netns::Namespace& ns) const {
    // A container's namespace (its owner names a container or a runtime's sandbox) with no
    // process left is a leak wherever its mount is, an agent container's copy included:
    // runtimes remove theirs with the container.
    if (ns.owner && (!ns.owner->container.empty() || !ns.owner->sandbox.empty()))
        return true;
    for (const auto& list : {ns.mounts, ns.other_mounts})
        for (const std::string_view m : list) {
            const auto path = path_there(m); // another mount namespace's: PATH there
            for (const auto& glob : config_.stale_mount_paths)
                if (!path.empty() && glob_matches(glob, path))
                    return true;
        }
    return false;
}

PeerState Engine::state(Observer observer, const registry::Entry& entry) const {
    if (names_self(observer, entry))
        return PeerState::Active; // this process is inside
    const auto peer = registry::peer_of(observer, entry);
    if (!peer)
        return PeerState::Unknown;
    const auto* known = peers_.get(*peer);
    return known == nullptr ? PeerState::Unknown : known->state;
}

Engine::Verdict Engine::live_state(Nsid nsid, const registry::Entry& entry,
                                   std::uint64_t now) const {
    const auto grace = config_.orphan_grace_usec;
    if (const auto* known = peers_.get(nsid); known != nullptr && known->held) {
        const auto* ns = catalog_.by_nsid(nsid);
        if (ns == nullptr || (!ns->pid && ns->processes == 0 && !ns->mounted()))
            return {PeerState::Unknown}; // its holder went since the last look (a teardown)
        if (ns->pid || ns->processes > 0)
            return {PeerState::Active}; // a process held it at the last look
        // Bind mounts only: a runtime's mount (its path, or its container's owner) that has
        // outlived every process by the grace period is the leak a runtime leaves behind.
        const auto since = ns->no_process_since_usec;
        if (since == 0 || !leak_prone(*ns))
            return {PeerState::Mounted};
        if (now - since >= grace)
            return {PeerState::StaleMount, since};
        return {PeerState::Mounted, 0, since + grace};
    }
    const auto* v = unheld_.get(nsid);
    if (v == nullptr || v->row_since != entry.since_usec)
        return {PeerState::Unknown}; // no verdict yet
    if (!peer(nsid).holders.fds->empty())
        return {PeerState::FdHeld, v->unheld_since};
    // Pinned: nothing held it for the grace period, fds included (a search that began after it
    // was unheld walked every process and found none).
    if (now - v->unheld_since >= grace)
        return fd_covered_usec_ >= v->unheld_since ? Verdict{PeerState::Pinned, v->unheld_since}
                                                   : Verdict{PeerState::Unknown};
    return {PeerState::Unknown, 0, v->unheld_since + grace};
}

void Engine::touch(Nsid nsid, bool identity) {
    auto [it, added] = touched_.emplace(nsid, identity);
    if (!added && identity)
        it->second = true;
}

std::uint64_t Engine::next_state_change_usec() const noexcept {
    return deadlines_.empty() ? 0 : deadlines_.begin()->first;
}

std::size_t Engine::settle() {
    const auto now = clock_.realtime();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        touch(deadlines_.begin()->second);
        deadlines_.erase(deadlines_.begin());
    }
    std::size_t count = 0;
    // An update shows the row as it is now (an identity or a state: nothing leaves a table).
    const auto update = [&](Observer o, const registry::Entry& e) {
        feed_.push(Feed::Kind::Update, o, view(o, e), false, state(o, e));
        ++count;
    };
    const auto& rows = registry_.table(registry::kSelf)->rows;
    for (const auto& [nsid, identity] : touched_) {
        const auto row = rows.find(nsid);
        if (row == rows.end())
            continue;
        const auto& entry = row->second.entry;
        const auto verdict = live_state(nsid, entry, now);
        if (verdict.deadline != 0)
            deadlines_.emplace(verdict.deadline, nsid);
        // As last settled: what state() answers.
        const auto* known = peers_.get(nsid);
        const auto was = known != nullptr ? known->state : PeerState::Unknown;
        const auto leaking = known != nullptr ? known->leaking_since_usec : 0;
        if (leaking != verdict.leaking_since)
            ++evidence_version_;
        if (was != verdict.state || leaking != verdict.leaking_since) {
            auto& now_known = peers_[nsid];
            now_known.state = verdict.state;
            now_known.leaking_since_usec = verdict.leaking_since;
            if (verdict.state != PeerState::Unknown)
                now_known.decided = verdict.state;
        } else if (!identity) {
            continue;
        }
        update(registry::kSelf, entry);
        // Rows of other tables show this peer's identity and state.
        if (config_.host)
            registry_.for_each_row_naming(nsid, update);
    }
    // A start-up or a burst touches every row: that scratch is given back, not kept (a bucket
    // array of 10000 rows is ~80 KiB).
    if (touched_.bucket_count() > 1024)
        decltype(touched_)().swap(touched_);
    else
        touched_.clear();
    return count;
}

template <typename Fn> void Engine::for_each_self_state(Fn&& fn) const {
    auto known = peers_.begin(); // both sorted by nsid
    for (const auto& [nsid, row] : registry_.table(registry::kSelf)->rows) {
        while (known != peers_.end() && known->first < nsid)
            ++known;
        if (known != peers_.end() && known->first == nsid)
            fn(row.entry, known->second.state, known->second.leaking_since_usec);
        else
            fn(row.entry, PeerState::Unknown, std::uint64_t{0});
    }
}

std::array<std::size_t, static_cast<std::size_t>(PeerState::Count)> Engine::state_counts() const {
    std::array<std::size_t, static_cast<std::size_t>(PeerState::Count)> out{};
    for_each_self_state([&](const registry::Entry&, PeerState s, std::uint64_t) {
        ++out[static_cast<std::size_t>(s)];
    });
    return out;
}

std::array<std::uint64_t, static_cast<std::size_t>(PeerState::Count)> Engine::oldest_since() const {
    std::array<std::uint64_t, static_cast<std::size_t>(PeerState::Count)> out{};
    for_each_self_state([&](const registry::Entry& entry, PeerState s, std::uint64_t leaking) {
        auto& oldest = out[static_cast<std::size_t>(s)];
        const auto since = leaking ? leaking : entry.since_usec;
        if (oldest == 0 || since < oldest)
            oldest = since;
    });
    return out;
}

std::vector<Engine::Unlisted> Engine::unlisted() const {
    std::vector<Unlisted> out;
    const auto now = clock_.realtime();
    for (const auto& [cookie, ns] : catalog_.namespaces()) {
        if (ns.nsid || ns.inode == catalog_.self_inode())
            continue;
        const auto seen = first_seen_.find(cookie); // first seen before a restart
        Unlisted u{identity_of(ns), PeerState::Unknown, 0,
                   seen != first_seen_.end() ? std::min(seen->second, ns.first_seen_usec)
                                             : ns.first_seen_usec};
        const auto since = ns.no_process_since_usec;
        if (ns.pid || ns.processes > 0)
            u.state = PeerState::Active;
        else if (!ns.mounted())
            u.state = PeerState::Unknown; // its holder went: dropped at the end of the pass
        else if (since != 0 && leak_prone(ns) && now - since >= config_.orphan_grace_usec)
            u.state = PeerState::StaleMount, u.leaking_since_usec = since;
        else
            u.state = PeerState::Mounted;
        out.push_back(std::move(u));
    }
    // Met through fds only (the last complete search): fd-held since it first found them.
    for (const auto& [inode, h] : held_without_id_)
        if (catalog_.namespaces().find(h.peer.cookie.value_or(0)) == catalog_.namespaces().end())
            out.push_back(
                Unlisted{h.peer, PeerState::FdHeld, h.first_found_usec, h.first_found_usec});
    return out;
}

void Engine::note_held_without_id(const std::vector<std::pair<std::uint64_t, std::uint64_t>>& found,
                                  const netns::FdFound& search) {
    decltype(held_without_id_) now;
    for (const auto& [inode, cookie] : found) {
        const auto holders = search.holders.find(inode);
        if (holders == search.holders.end() || holders->second.empty())
            continue;
        HeldWithoutId h;
        const auto was = held_without_id_.find(inode);
        const bool same =
            was != held_without_id_.end() && was->second.peer.cookie.value_or(0) == cookie;
        h.first_found_usec = same ? was->second.first_found_usec : fd_searched_usec_;
        h.peer.inode = inode;
        if (cookie)
            h.peer.cookie = cookie;
        std::vector<registry::FdHolder> fds;
        for (const auto& f : holders->second)
            fds.push_back(registry::FdHolder{f.pid, f.comm, f.fd, f.socket});
        if (same)
            h.peer.owner = was->second.peer.owner;
        else if (auto owner = fd_holder_owner(fds.front().pid)) // the holder's, as for rows
            h.peer.owner = Shared(std::move(*owner));
        h.peer.holders.fds = Shared(std::move(fds));
        now.emplace(inode, std::move(h));
    }
    held_without_id_ = std::move(now);
}

void Engine::recheck_held_without_id() {
    for (auto it = held_without_id_.begin(); it != held_without_id_.end();) {
        const auto& fds = *it->second.peer.holders.fds;
        std::vector<registry::FdHolder> still;
        for (const auto& f : fds) // a socket is looked at again by the next search only
            if (f.socket || netns::still_holds(config_.roots.proc_dir, f.pid, f.fd, it->first))
                still.push_back(f);
        if (still.empty()) {
            it = held_without_id_.erase(it); // gone at the next look
            continue;
        }
        if (still.size() != fds.size())
            it->second.peer.holders.fds = Shared(std::move(still));
        ++it;
    }
}

Engine::Leaking Engine::leaking() const {
    Leaking out;
    out.count = state_counts();
    out.oldest = oldest_since();
    for (const auto& u : unlisted()) {
        const auto i = static_cast<std::size_t>(u.state);
        ++out.count[i];
        const auto since = u.leaking_since_usec ? u.leaking_since_usec : u.first_seen_usec;
        if (out.oldest[i] == 0 || since < out.oldest[i])
            out.oldest[i] = since;
    }
    return out;
}

} // namespace nsidd::mirror
