// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/netlink_kernel.hpp"

#include <cerrno>

#include <unistd.h>

#include <linux/rtnetlink.h>

#include "netns/discovery.hpp"

namespace nsidd::daemon {
namespace {

bool is(const std::error_code& ec, int e) {
    return ec == std::error_code(e, std::system_category());
}

} // namespace

Result<std::unique_ptr<NetlinkKernel>> NetlinkKernel::open(int rcvbuf,
                                                           std::optional<UniqueFd> event_fd) {
    // Subscribe before reading anything, so that no change falls between snapshot and stream.
    auto events = event_fd ? netlink::EventSocket::adopt(std::move(*event_fd), rcvbuf)
                           : netlink::EventSocket::open(rcvbuf);
    if (!events)
        return fail(events.error());
    auto requests = netlink::RequestSocket::open();
    if (!requests)
        return fail(requests.error());
    return std::unique_ptr<NetlinkKernel>(
        new NetlinkKernel(std::move(*events), std::move(*requests)));
}

bool NetlinkKernel::decode(const netlink::Datagram& d, Events& out) {
    auto messages = netlink::parse_datagram(d.bytes);
    if (!messages)
        return false;
    // docs/kernel.md, "Whose table changed": no cmsg, a negative one (older kernels reuse the
    // skb flag) or our own id all mean "local".
    const bool local = !d.origin || *d.origin < 0 || d.origin == own_id_;
    for (const auto& m : *messages) {
        const auto* n = std::get_if<netlink::NsidMessage>(&m);
        if (n == nullptr || n->nsid < 0)
            continue;
        using Kind = registry::Op::Kind;
        Kind kind;
        switch (n->type) {
        case RTM_NEWNSID:
            kind = Kind::New;
            break;
        case RTM_DELNSID:
            kind = Kind::Del;
            break;
        default:
            continue;
        }
        if (!local) {
            // The origin is self's id for the namespace whose table changed.
            ++stats_.foreign_events;
            out.ops.push_back(registry::Op{kind, *d.origin, n->nsid, std::nullopt});
            continue;
        }
        ++stats_.nsid_events;
        ++(kind == Kind::New ? stats_.new_events : stats_.del_events);
        out.ops.push_back(registry::Op{kind, registry::kSelf, n->nsid, n->nsid});
    }
    return true;
}

mirror::Kernel::Events NetlinkKernel::receive() {
    Events out;
    for (;;) {
        auto d = events_.receive();
        if (!d) {
            if (is(d.error(), EAGAIN))
                break;
            if (is(d.error(), ENOBUFS)) {
                // The kernel dropped events; it delivers nothing more until the queue is
                // empty, so keep draining, then resync.
                ++stats_.overruns;
                out.lost = true;
                continue;
            }
            if (is(d.error(), EINTR))
                continue;
            ++stats_.malformed;
            out.lost = true;
            // A datagram too large for its slot: the ones read with it are still to be drained
            // (the resync that follows supersedes them all). Any other error ends the read.
            if (d.error() == make_error_code(Errc::Truncated))
                continue;
            break;
        }
        ++stats_.datagrams;
        if (d->sender != 0) {
            ++stats_.not_kernel;
            continue;
        }
        if (!decode(*d, out)) {
            ++stats_.malformed;
            out.lost = true;
        }
    }
    return out;
}

std::size_t NetlinkKernel::discard() {
    std::size_t n = 0;
    for (;;) {
        auto d = events_.receive();
        if (d) {
            ++stats_.datagrams;
            ++n;
            continue;
        }
        if (is(d.error(), ENOBUFS))
            ++stats_.overruns;
        else if (d.error() == make_error_code(Errc::Truncated))
            ++n;
        else if (!is(d.error(), EINTR))
            return n; // EAGAIN, or an error the resync will meet again
    }
}

Result<mirror::Kernel::Dump> NetlinkKernel::dump(std::optional<mirror::Observer> target) {
    auto messages = requests_.dump(target);
    if (!messages)
        return fail(messages.error());
    Dump out;
    out.rows.reserve(messages->size());
    for (const auto& m : *messages)
        out.rows.push_back(Row{m.nsid, m.current_nsid});
    // docs/kernel.md, "Dumps are cut": one skb of 28-byte (36 with TARGET_NSID) entries.
    out.maybe_cut =
        messages->size() >= (target ? netlink::kTargetDumpCapacity : netlink::kDumpCapacity);
    return out;
}

Result<std::vector<std::optional<mirror::Nsid>>>
NetlinkKernel::translate(std::span<const mirror::Nsid> self_ids,
                         std::optional<mirror::Observer> target) {
    std::vector<netlink::NsRef> peers;
    peers.reserve(self_ids.size());
    for (auto nsid : self_ids)
        peers.push_back(netlink::ByNsid{nsid});
    auto replies = requests_.probe(peers, target);
    if (!replies)
        return fail(replies.error());
    std::vector<std::optional<mirror::Nsid>> out;
    out.reserve(replies->size());
    for (const auto& r : *replies) {
        if (r.error == 0 && r.message.nsid >= 0)
            out.emplace_back(r.message.nsid);
        else if (r.error == 0 || r.error == ENOENT || target)
            out.emplace_back(); // no such id (another table: none for that peer, or gone)
        else
            return fail_errno(r.error);
    }
    return out;
}

std::optional<mirror::Nsid> NetlinkKernel::own_id() {
    if (auto self = requests_.get(netlink::ByPid{::getpid()}, std::nullopt))
        own_id_ = self->nsid >= 0 ? std::optional<std::int32_t>(self->nsid) : std::nullopt;
    return own_id_;
}

std::optional<mirror::Nsid> NetlinkKernel::own_id_in(mirror::Observer target) {
    auto id = requests_.get(netlink::ByPid{::getpid()}, target);
    if (!id || id->nsid < 0)
        return std::nullopt;
    return id->nsid;
}

Result<std::uint64_t> NetlinkKernel::cookie(int fd) {
    return netns::namespace_cookie(fd);
}

Result<std::vector<std::optional<std::int32_t>>> NetlinkKernel::ids_of(std::span<const int> fds) {
    std::vector<netlink::NsRef> peers;
    peers.reserve(fds.size());
    for (int fd : fds)
        peers.push_back(netlink::ByFd{fd});
    auto replies = requests_.probe(peers, std::nullopt);
    if (!replies)
        return fail(replies.error());
    std::vector<std::optional<std::int32_t>> out;
    out.reserve(replies->size());
    for (const auto& r : *replies)
        out.push_back(r.error == 0 && r.message.nsid >= 0 ? std::optional(r.message.nsid)
                                                          : std::nullopt);
    return out;
}

Result<void> NetlinkKernel::assign(int fd) {
    return requests_.assign(-1, netlink::ByFd{fd});
}

} // namespace nsidd::daemon
