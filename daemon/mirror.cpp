// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/mirror.hpp"

#include <algorithm>
#include <cerrno>
#include <map>

#include <unistd.h>

#include <linux/rtnetlink.h>

#include "util/time.hpp"

namespace nsidd::daemon {
namespace {

using registry::Entry;
using registry::Nsid;

// Past the highest id known, how far to probe for more: auto ids are dense from 0.
constexpr Nsid kProbeSlack = 512;
constexpr std::size_t kProbeStep = 4096;
constexpr int kResyncAttempts = 4;
// Namespaces opened at once for GET by FD; each open fd pins its netns, so keep it brief.
constexpr std::size_t kFdChunk = 128;

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

Mirror::Mirror(netlink::EventSocket events, netlink::RequestSocket requests, const Config& config)
    : events_(std::move(events)), requests_(std::move(requests)), config_(config),
      registry_(config.history) {}

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
    Nsid highest = truth.empty() ? 0 : truth.rbegin()->first;
    if (const auto* self = registry_.table(registry::kSelf); self && !self->rows.empty())
        highest = std::max(highest, self->rows.rbegin()->first);
    std::vector<netlink::Peer> peers;
    auto add_found = [&](Nsid nsid) {
        truth.emplace(nsid, Entry{nsid, nsid, {}, now, probe_source});
    };
    std::int64_t limit = static_cast<std::int64_t>(highest) + kProbeSlack;
    for (std::int64_t next = 0; next <= limit;) {
        peers.clear();
        const std::int64_t end = std::min<std::int64_t>(next + kProbeStep, limit + 1);
        for (; next < end; ++next)
            if (!truth.count(static_cast<Nsid>(next)))
                peers.push_back(netlink::ByNsid{static_cast<Nsid>(next)});
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
            if (nsid > limit)
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
    // Every namespace we can open: its id, whatever its value. Open, ask, close.
    const auto found = netns::scan(config_.roots);
    for (std::size_t start = 0; start < found.size(); start += kFdChunk) {
        std::vector<UniqueFd> fds;
        std::vector<std::size_t> index;
        peers.clear();
        for (std::size_t i = start; i < std::min(found.size(), start + kFdChunk); ++i) {
            auto fd = netns::open_namespace(found[i].path);
            if (!fd)
                continue; // gone since the scan, or not ours to open
            peers.push_back(netlink::ByFd{fd->get()});
            index.push_back(i);
            fds.push_back(std::move(*fd));
        }
        auto replies = requests_.probe(peers, std::nullopt);
        fds.clear();
        if (!replies)
            return fail(replies.error());
        stats_.last_probes += peers.size();
        for (std::size_t k = 0; k < replies->size(); ++k) {
            const auto& r = (*replies)[k];
            if (r.error != 0 || r.message.nsid < 0)
                continue;
            add_found(r.message.nsid);
        }
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
    if (config_.host)
        read_new_observers(out.changes);
    return out;
}

} // namespace nsidd::daemon
