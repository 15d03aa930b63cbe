// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/mirror.hpp"

#include <algorithm>
#include <cerrno>
#include <map>
#include <utility>

#include <unistd.h>

#include <linux/rtnetlink.h>

#include "util/file.hpp"
#include "util/time.hpp"

namespace nsidd::daemon {
namespace {

using registry::Entry;
using registry::Nsid;

// Past the highest id known, how far to probe for more: auto ids are dense from 0.
constexpr Nsid kProbeSlack = 512;
constexpr std::size_t kProbeStep = 4096;
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
    case ResyncReason::Count:
        break;
    }
    return "unknown";
}

const char* to_string(PeerState state) noexcept {
    switch (state) {
    case PeerState::Resolved:
        return "resolved";
    case PeerState::Orphaned:
        return "orphaned";
    case PeerState::Unknown:
        break;
    }
    return "unknown";
}

Mirror::Mirror(netlink::EventSocket events, netlink::RequestSocket requests, const Config& config)
    : events_(std::move(events)), requests_(std::move(requests)), config_(config),
      registry_(config.history), catalog_(config.roots, requests_, config.assign_ids) {}

Result<std::unique_ptr<Mirror>> Mirror::open(const Config& config,
                                             std::optional<UniqueFd> event_fd) {
    // Subscribe before reading anything, so that no change falls between snapshot and stream.
    auto events = event_fd ? netlink::EventSocket::adopt(std::move(*event_fd), config.rcvbuf)
                           : netlink::EventSocket::open(config.rcvbuf);
    if (!events)
        return fail(events.error());
    auto requests = netlink::RequestSocket::open();
    if (!requests)
        return fail(requests.error());
    return std::unique_ptr<Mirror>(new Mirror(std::move(*events), std::move(*requests), config));
}

bool Mirror::is_assigned(registry::Observer observer, Nsid nsid) {
    if (observer != registry::kSelf) {
        const auto* t = foreign_table(observer);
        return t == nullptr || t->count(nsid) != 0; // unreadable: keep, resync settles it
    }
    auto reply = requests_.get(netlink::ByNsid{nsid}, std::nullopt);
    // On a failed query, keep the entry: the next resync settles it either way.
    return reply || reply.error() != std::error_code(ENOENT, std::system_category());
}

std::optional<Nsid> Mirror::nsid_of_name(const std::string& name) {
    // A name is one path component: no traversal out of the netns directory.
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
        return std::nullopt;
    auto fd = netns::open_namespace(config_.roots.netns_dir + "/" + name);
    if (!fd)
        return std::nullopt;
    auto reply = requests_.get(netlink::ByFd{fd->get()}, std::nullopt);
    if (!reply || reply->nsid < 0)
        return std::nullopt;
    return reply->nsid;
}

const std::map<Nsid, Nsid>* Mirror::foreign_table(registry::Observer o) {
    if (auto it = foreign_cache_.find(o); it != foreign_cache_.end())
        return it->second ? &*it->second : nullptr;
    auto& slot = foreign_cache_[o];
    auto dump = requests_.dump(o);
    if (!dump)
        return nullptr; // EINVAL: o is gone; EACCES: not ours to read
    std::map<Nsid, Nsid> table;
    for (const auto& m : *dump)
        if (m.nsid >= 0)
            table[m.nsid] = m.current_nsid.value_or(-1);
    // A TARGET dump holds at most 901 entries in its one skb (Linux >= 6.10). Past that, ask
    // o's id for every peer self knows: GET{NSID=self's id, TARGET=o}. Peers self has no id
    // for stay invisible past the cut.
    if (dump->size() >= netlink::kTargetDumpCapacity) {
        std::vector<netlink::Peer> peers;
        if (const auto* self = registry_.table(registry::kSelf))
            for (const auto& [nsid, row] : self->rows)
                peers.push_back(netlink::ByNsid{nsid});
        auto replies = requests_.probe(peers, o);
        if (replies) {
            stats_.last_probes += peers.size();
            for (std::size_t i = 0; i < replies->size(); ++i) {
                const auto& r = (*replies)[i];
                if (r.error == 0 && r.message.nsid >= 0)
                    table[r.message.nsid] = std::get<netlink::ByNsid>(peers[i]).nsid;
            }
        }
    }
    slot = std::move(table);
    return &*slot;
}

std::vector<Entry> Mirror::foreign_entries(registry::Observer o, registry::Source source) {
    std::vector<Entry> out;
    const auto now = realtime_usec();
    if (const auto* t = foreign_table(o))
        for (const auto& [nsid, current] : *t)
            out.push_back(Entry{
                nsid, current >= 0 ? std::optional<Nsid>(current) : std::nullopt, {}, now, source});
    return out;
}

void Mirror::read_new_observers(std::vector<registry::Change>& changes) {
    std::vector<registry::Observer> fresh;
    for (const auto& c : changes)
        if (c.observer == registry::kSelf && !c.removed &&
            (c.kind == registry::ChangeKind::New || c.kind == registry::ChangeKind::Resync))
            fresh.push_back(c.entry.nsid);
    for (registry::Observer o : fresh) {
        auto diff =
            registry_.resync(o, foreign_entries(o, registry::Source::Dump), realtime_usec());
        changes.insert(changes.end(), std::make_move_iterator(diff.begin()),
                       std::make_move_iterator(diff.end()));
    }
}

Result<std::vector<Entry>> Mirror::read_table(registry::Source source) {
    const auto now = realtime_usec();
    // Our own self id, if one exists: the LISTEN_ALL origin rule treats it as local.
    if (auto self = requests_.get(netlink::ByPid{::getpid()}, std::nullopt); self)
        self_id_ = self->nsid >= 0 ? std::optional<std::int32_t>(self->nsid) : std::nullopt;

    auto dump = requests_.dump(std::nullopt);
    if (!dump)
        return fail(dump.error());
    std::map<Nsid, Entry> truth;
    for (const auto& m : *dump)
        if (m.nsid >= 0)
            truth.emplace(m.nsid, Entry{m.nsid, m.nsid, {}, now, source});
    stats_.last_probes = 0;
    // Linux >= 6.10 sends one skb and a silent NLMSG_DONE (KERNEL-NSID.md §4.3): a full one
    // may have been cut. Then find the rest by GET: by NSID over the dense range, by FD for
    // sparse ids of namespaces we can reach.
    auto values = [&truth] {
        std::vector<Entry> out;
        out.reserve(truth.size());
        for (auto& [nsid, e] : truth)
            out.push_back(std::move(e));
        return out;
    };
    stats_.last_dump_truncated = dump->size() >= netlink::kDumpCapacity;
    if (!stats_.last_dump_truncated)
        return values();

    const auto probe_source = source == registry::Source::Dump ? registry::Source::Probe : source;
    const Nsid dump_highest = truth.empty() ? 0 : truth.rbegin()->first;
    std::vector<netlink::Peer> peers;
    auto add_found = [&](Nsid nsid) {
        truth.emplace(nsid, Entry{nsid, nsid, {}, now, probe_source});
    };
    // Every GET costs the kernel a walk of the table up to the peer (peernet2id), so ask as
    // little as possible. First every namespace we can reach: a fresh discovery pass (open,
    // ask, close). An id never changes while its namespace lives, so only namespaces met for
    // the first time, or without an id so far, are asked; the others' ids are certain.
    const auto before = catalog_.stats().queried;
    catalog_.set_asking(true);
    catalog_.restart_pass();
    catalog_.scan_mounts(now, true);
    pass_started_usec_ = now;
    while (!catalog_.scan_proc(SIZE_MAX, now)) {
    }
    catalog_.begin_refresh();
    catalog_.refresh_unassigned();
    stats_.last_probes += catalog_.stats().queried - before;
    verdicts_due_ = true;
    for (const auto& [cookie, ns] : catalog_.namespaces())
        if (ns.nsid)
            add_found(*ns.nsid);
    // Then by NSID over the dense range (auto ids are dense from 0), for ids not known yet:
    // those of namespaces nothing visible holds. An absent id costs the kernel nothing.
    std::int64_t limit = std::int64_t{dump_highest} + kProbeSlack;
    for (std::int64_t next = 0; next <= limit;) {
        peers.clear();
        const std::int64_t end = std::min<std::int64_t>(next + kProbeStep, limit + 1);
        for (; next < end; ++next) {
            if (truth.count(static_cast<Nsid>(next)))
                limit = std::max<std::int64_t>(limit, next + kProbeSlack);
            else
                peers.push_back(netlink::ByNsid{static_cast<Nsid>(next)});
        }
        auto replies = requests_.probe(peers, std::nullopt);
        if (!replies)
            return fail(replies.error());
        stats_.last_probes += peers.size();
        for (const auto& r : *replies)
            if (r.error == 0 && r.message.nsid >= 0) {
                add_found(r.message.nsid);
                limit = std::max<std::int64_t>(limit, std::int64_t{r.message.nsid} + kProbeSlack);
            }
        limit = std::min<std::int64_t>(limit, INT32_MAX);
    }
    // Sparse ids the registry already knows beyond the range: still there?
    peers.clear();
    if (const auto* self = registry_.table(registry::kSelf))
        for (const auto& [nsid, row] : self->rows)
            if (nsid > limit && !truth.count(nsid))
                peers.push_back(netlink::ByNsid{nsid});
    if (!peers.empty()) {
        auto replies = requests_.probe(peers, std::nullopt);
        if (!replies)
            return fail(replies.error());
        stats_.last_probes += peers.size();
        for (const auto& r : *replies)
            if (r.error == 0 && r.message.nsid >= 0)
                add_found(r.message.nsid);
    }
    return values();
}

Result<std::vector<registry::Change>> Mirror::resync(ResyncReason reason) {
    const auto started = monotonic_usec();
    std::vector<registry::Change> changes;
    const auto source =
        reason == ResyncReason::Startup ? registry::Source::Dump : registry::Source::Resync;
    for (int attempt = 0; attempt < kResyncAttempts; ++attempt) {
        auto table = read_table(source);
        if (!table) {
            ++stats_.resync_failures;
            return fail(table.error());
        }
        foreign_cache_.clear();
        auto diff = registry_.resync(registry::kSelf, std::move(*table), realtime_usec());
        identify(diff);
        if (std::exchange(verdicts_due_, false))
            renew_verdicts();
        changes.insert(changes.end(), std::make_move_iterator(diff.begin()),
                       std::make_move_iterator(diff.end()));
        if (config_.host) {
            // Every observer self has an id for, and only those.
            std::vector<registry::Observer> observers, stale;
            for (const auto& [nsid, row] : registry_.table(registry::kSelf)->rows)
                observers.push_back(nsid);
            for (const auto& [o, t] : registry_.tables())
                if (o != registry::kSelf && !registry_.table(registry::kSelf)->rows.count(o))
                    stale.push_back(o);
            for (registry::Observer o : stale)
                observers.push_back(o); // emptied below: its netns is gone
            for (registry::Observer o : observers) {
                auto truth = std::find(stale.begin(), stale.end(), o) != stale.end()
                                 ? std::vector<Entry>{}
                                 : foreign_entries(o, source);
                auto d = registry_.resync(o, std::move(truth), realtime_usec());
                changes.insert(changes.end(), std::make_move_iterator(d.begin()),
                               std::make_move_iterator(d.end()));
            }
        }
        // Events queued while we read may be older than what we read: reconcile them. A NEW
        // for an id the snapshot holds is undecidable (repeat or replacement): read again.
        const auto ambiguous = registry_.counters().ambiguous;
        auto queued = drain(true);
        changes.insert(changes.end(), std::make_move_iterator(queued.changes.begin()),
                       std::make_move_iterator(queued.changes.end()));
        if (!queued.lost && registry_.counters().ambiguous == ambiguous) {
            ++stats_.resyncs[static_cast<std::size_t>(reason)];
            stats_.last_resync_usec = realtime_usec();
            stats_.last_resync_duration_usec = monotonic_usec() - started;
            return changes;
        }
    }
    ++stats_.resync_failures;
    return fail(Errc::Timeout);
}

void Mirror::read_origin() {
    if (!boot_id_.empty())
        return;
    if (auto id = read_file(config_.roots.proc_dir + "/sys/kernel/random/boot_id", 64)) {
        boot_id_ = std::move(*id);
        while (!boot_id_.empty() && (boot_id_.back() == '\n' || boot_id_.back() == ' '))
            boot_id_.pop_back();
    }
    self_cookie_ = catalog_.self_cookie();
}

bool Mirror::load_ids(const std::string& path) {
    read_origin();
    if (boot_id_.empty() || self_cookie_ == 0)
        return false; // no NS_GET_ID: inodes are no key across a restart
    const auto text = read_file(path);
    return text && catalog_.import_ids(*text, boot_id_, self_cookie_);
}

Result<void> Mirror::save_ids(const std::string& path) {
    read_origin();
    if (boot_id_.empty() || self_cookie_ == 0 || catalog_.ids_version() == saved_ids_version_)
        return {};
    auto written = write_file_atomic(path, catalog_.export_ids(boot_id_, self_cookie_), 0600);
    if (written)
        saved_ids_version_ = catalog_.ids_version();
    return written;
}

std::size_t Mirror::discard() {
    std::size_t n = 0;
    for (;;) {
        auto d = events_.receive();
        if (d) {
            ++stats_.datagrams;
            ++n;
            continue;
        }
        if (d.error() == std::error_code(ENOBUFS, std::system_category()))
            ++stats_.overruns;
        else if (d.error() != std::error_code(EINTR, std::system_category()))
            return n; // EAGAIN, or an error the resync will meet again
    }
}

Mirror::Drained Mirror::drain(bool reconcile) {
    Drained out;
    registry::Batch batch;
    batch.reconcile = reconcile;
    foreign_cache_.clear();
    for (;;) {
        auto d = events_.receive();
        if (!d) {
            if (d.error() == std::error_code(EAGAIN, std::system_category()))
                break;
            if (d.error() == std::error_code(ENOBUFS, std::system_category())) {
                // The kernel dropped events; it delivers nothing more until the queue is
                // empty, so keep draining, then resync.
                ++stats_.overruns;
                out.lost = true;
                continue;
            }
            if (d.error() == std::error_code(EINTR, std::system_category()))
                continue;
            ++stats_.malformed;
            out.lost = true;
            break;
        }
        ++stats_.datagrams;
        if (d->sender != 0) {
            ++stats_.not_kernel;
            continue;
        }
        auto messages = netlink::parse_datagram(d->bytes);
        if (!messages) {
            ++stats_.malformed;
            out.lost = true;
            continue;
        }
        // KERNEL-NSID.md §5.2: no cmsg, a negative one (pre-fix kernels reuse the skb flag)
        // or our own self id all mean "local".
        const bool local = !d->origin || *d->origin < 0 || d->origin == self_id_;
        for (const auto& m : *messages) {
            const auto* n = std::get_if<netlink::NsidMessage>(&m);
            if (n == nullptr || n->nsid < 0)
                continue;
            using Kind = registry::Op::Kind;
            const Kind kind = n->type == RTM_NEWNSID ? Kind::New : Kind::Del;
            if (!local) {
                // The origin is self's id for the namespace whose table changed.
                ++stats_.foreign_events;
                if (config_.host)
                    batch.ops.push_back(registry::Op{kind, *d->origin, n->nsid, std::nullopt});
                continue;
            }
            ++stats_.nsid_events;
            ++(kind == Kind::New ? stats_.new_events : stats_.del_events);
            ++out.events;
            batch.ops.push_back(registry::Op{kind, registry::kSelf, n->nsid, n->nsid});
        }
    }
    // After a loss every event read is older than the snapshot the caller takes next, which
    // supersedes them: applying them across the hole could only invent deaths.
    if (out.lost)
        return out;
    batch.now_usec = realtime_usec();
    // Events never name the peer: a foreign NEW learns self's id for it from o's table.
    for (auto& op : batch.ops) {
        if (op.observer == registry::kSelf || op.kind != registry::Op::Kind::New)
            continue;
        if (const auto* t = foreign_table(op.observer))
            if (auto it = t->find(op.nsid); it != t->end() && it->second >= 0)
                op.current_nsid = it->second;
    }
    out.changes = registry_.apply(
        batch, [this](registry::Observer o, registry::Nsid nsid) { return is_assigned(o, nsid); });
    identify(out.changes);
    if (config_.host)
        read_new_observers(out.changes);
    return out;
}

registry::Identity Mirror::identity_of(const netns::Namespace& ns) {
    registry::Identity id;
    if (!ns.cookie_is_inode)
        id.cookie = ns.cookie;
    id.inode = ns.inode;
    id.names = ns.names;
    if (ns.pid)
        id.pid = *ns.pid;
    return id;
}

void Mirror::attach_updated() {
    const auto* self = registry_.table(registry::kSelf);
    for (const auto cookie : catalog_.take_updated()) {
        const auto it = catalog_.namespaces().find(cookie);
        if (it == catalog_.namespaces().end() || !it->second.nsid)
            continue;
        const auto nsid = *it->second.nsid;
        const auto row = self->rows.find(nsid);
        if (row == self->rows.end())
            continue; // its NEW is still on the way; identify() attaches it then
        registry_.set_peer(nsid, identity_of(it->second));
        // Found through a process or a mount: held now.
        verdicts_[nsid] = Verdict{row->second.entry.since_usec, 0};
    }
}

void Mirror::identify(const std::vector<registry::Change>& changes) {
    bool unexplained = false;
    for (const auto& c : changes) {
        if (c.observer != registry::kSelf)
            continue;
        const auto nsid = c.entry.nsid;
        const bool gone = c.kind == registry::ChangeKind::Del ||
                          c.kind == registry::ChangeKind::Purge ||
                          (c.kind == registry::ChangeKind::Resync && c.removed);
        if (gone) {
            // Dead: its cookie is never seen again, and its id may name a new peer at once.
            if (c.entry.peer.cookie)
                catalog_.forget(*c.entry.peer.cookie);
            else if (const auto* ns = catalog_.by_nsid(nsid))
                catalog_.forget(ns->cookie);
            if (auto v = verdicts_.find(nsid);
                v != verdicts_.end() && v->second.row_since == c.entry.since_usec)
                verdicts_.erase(v);
            continue;
        }
        const auto* self = registry_.table(registry::kSelf);
        const auto row = self->rows.find(nsid);
        if (row == self->rows.end() || row->second.entry.peer.cookie)
            continue;
        if (const auto* ns = catalog_.by_nsid(nsid)) {
            registry_.set_peer(nsid, identity_of(*ns));
            verdicts_[nsid] = Verdict{row->second.entry.since_usec, 0};
        } else {
            unexplained = true;
        }
    }
    // A known namespace may have just been given an id: ask those that had none, soon.
    if (unexplained) {
        // A round in progress may already have asked the namespace that got the id: another
        // round follows it (one, however many ids arrive meanwhile).
        if (!refresh_due_)
            catalog_.begin_refresh();
        else
            another_round_ = true;
        refresh_due_ = true;
    }
    attach_updated();
}

bool Mirror::unexplained_rows() const {
    for (const auto& [nsid, row] : registry_.table(registry::kSelf)->rows)
        if (!row.entry.peer.cookie && !row.entry.peer.inode)
            return true;
    return false;
}

void Mirror::discover_mounts() {
    catalog_.set_asking(unexplained_rows());
    catalog_.scan_mounts(realtime_usec(), false);
    attach_updated();
}

void Mirror::refresh_ids(std::uint64_t deadline_usec) {
    const auto explained = [this] {
        attach_updated();
        return !unexplained_rows();
    };
    if (refresh_due_ && catalog_.refresh_unassigned(deadline_usec, explained)) {
        refresh_due_ = std::exchange(another_round_, false);
        if (refresh_due_)
            catalog_.begin_refresh();
    }
    attach_updated();
}

bool Mirror::discover_processes(std::size_t budget, bool mounts) {
    const auto now = realtime_usec();
    catalog_.set_asking(unexplained_rows());
    if (!catalog_.pass_running()) {
        pass_started_usec_ = now;
        if (mounts)
            catalog_.scan_mounts(now, false);
    }
    const bool done = catalog_.scan_proc(budget, now);
    attach_updated();
    if (!done)
        return false;
    renew_verdicts();
    return true;
}

void Mirror::renew_verdicts() {
    // A row whose peer nothing held in the pass just ended is unheld since that pass began, or
    // since earlier if it already was.
    std::map<Nsid, Verdict> next;
    for (const auto& [nsid, row] : registry_.table(registry::kSelf)->rows) {
        const auto since = row.entry.since_usec;
        if (catalog_.by_nsid(nsid) != nullptr) {
            next.emplace(nsid, Verdict{since, 0});
            continue;
        }
        const auto v = verdicts_.find(nsid);
        const bool still =
            v != verdicts_.end() && v->second.row_since == since && v->second.unheld_since != 0;
        next.emplace(nsid, Verdict{since, still ? v->second.unheld_since : pass_started_usec_});
    }
    verdicts_ = std::move(next);
}

registry::Entry Mirror::view(registry::Observer observer, const registry::Entry& entry) const {
    if (observer == registry::kSelf || !entry.current_nsid)
        return entry;
    registry::Entry out = entry;
    const auto& rows = registry_.table(registry::kSelf)->rows;
    if (const auto it = rows.find(*entry.current_nsid); it != rows.end())
        out.peer = it->second.entry.peer;
    return out;
}

PeerState Mirror::state(registry::Observer observer, const registry::Entry& entry) const {
    const auto peer = registry::peer_of(observer, entry);
    if (!peer)
        return PeerState::Unknown;
    const auto& rows = registry_.table(registry::kSelf)->rows;
    const auto row = rows.find(*peer);
    const auto v = verdicts_.find(*peer);
    if (row == rows.end() || v == verdicts_.end() ||
        v->second.row_since != row->second.entry.since_usec)
        return PeerState::Unknown;
    if (v->second.unheld_since == 0)
        return PeerState::Resolved;
    return realtime_usec() - v->second.unheld_since >= config_.orphan_grace_usec
               ? PeerState::Orphaned
               : PeerState::Unknown;
}

std::array<std::size_t, 3> Mirror::state_counts() const {
    std::array<std::size_t, 3> out{};
    for (const auto& [nsid, row] : registry_.table(registry::kSelf)->rows)
        ++out[static_cast<std::size_t>(state(registry::kSelf, row.entry))];
    return out;
}

} // namespace nsidd::daemon
