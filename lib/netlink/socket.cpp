// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netlink/socket.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

namespace nsidd::netlink {
namespace {

constexpr int kReplyTimeoutMs = 5000;
// GETs packed into one datagram: the replies (~832 bytes of buffer each) must all fit the
// request socket's receive buffer, or the kernel drops the surplus silently (unicast, no ENOBUFS).
constexpr std::size_t kProbeChunk = 256;
constexpr int kRequestRcvbuf = 4 << 20;

Result<MnlSocket> open_route_socket() {
    MnlSocket sock(mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!sock)
        return fail_errno();
    if (mnl_socket_bind(sock.get(), 0, MNL_SOCKET_AUTOPID) < 0)
        return fail_errno();
    return sock;
}

int set_int(int fd, int level, int name, int value) {
    return ::setsockopt(fd, level, name, &value, sizeof value);
}

// SO_RCVBUFFORCE where CAP_NET_ADMIN allows it, else SO_RCVBUF. Returns whether it was forced.
bool set_rcvbuf(int fd, int bytes) {
    if (set_int(fd, SOL_SOCKET, SO_RCVBUFFORCE, bytes) == 0)
        return true;
    set_int(fd, SOL_SOCKET, SO_RCVBUF, bytes);
    return false;
}

} // namespace

Result<EventSocket> EventSocket::open(int rcvbuf) {
    auto sock = open_route_socket();
    if (!sock)
        return fail(sock.error());
    EventSocket s;
    s.sock_ = std::move(*sock);
    const int fd = s.fd();
    if (set_int(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, static_cast<int>(kGroupNsid)) < 0)
        return fail_errno();
    if (auto r = s.configure(rcvbuf); !r)
        return fail(r.error());
    return s;
}

Result<EventSocket> EventSocket::adopt(UniqueFd fd, int rcvbuf) {
    EventSocket s;
    s.sock_.reset(mnl_socket_fdopen(fd.get()));
    if (!s.sock_)
        return fail_errno();
    fd.release();
    // The passed socket may lack our flags; a blocking event socket would stall the loop.
    const int flags = ::fcntl(s.fd(), F_GETFL);
    if (flags < 0 || ::fcntl(s.fd(), F_SETFL, flags | O_NONBLOCK) < 0)
        return fail_errno();
    // Join again: harmless when the bind mask already holds the group.
    if (set_int(s.fd(), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, static_cast<int>(kGroupNsid)) < 0)
        return fail_errno();
    if (auto r = s.configure(rcvbuf); !r)
        return fail(r.error());
    return s;
}

Result<void> EventSocket::configure(int rcvbuf) {
    const int fd = this->fd();
    socklen_t len = sizeof rcvbuf_;
    ::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_, &len);
    // Only ever grow: a socket passed by the service manager may have a larger buffer
    // (ReceiveBuffer=), which must stay to carry events across our restarts. The kernel
    // reports twice what was set.
    if (rcvbuf_ >= 2 * static_cast<long long>(rcvbuf))
        rcvbuf_forced_ = true;
    else
        rcvbuf_forced_ = set_rcvbuf(fd, rcvbuf);
    len = sizeof rcvbuf_;
    ::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_, &len);
    // Needs CAP_NET_BROADCAST; without it only the local table is visible, which self scope
    // mirrors anyway.
    listen_all_ = set_int(fd, SOL_NETLINK, NETLINK_LISTEN_ALL_NSID, 1) == 0;
    // Never NETLINK_NO_ENOBUFS: an overrun must be reported so that the mirror resyncs.
    return {};
}

// Event datagrams hold one small message each (an RTM_NEWNSID or DELNSID of ~40 bytes): 1 KiB
// per slot is plenty, and a larger one is reported as truncated. 32 slots: a storm's pause
// (docs/design.md, "Storms") queues a few dozen datagrams, read in one call.
struct EventSocket::Slots {
    static constexpr std::size_t kCount = 32;
    static constexpr std::size_t kSize = 1024;
    std::array<std::array<std::byte, kSize>, kCount> buffers;
    std::array<iovec, kCount> iov;
    std::array<sockaddr_nl, kCount> addrs;
    struct alignas(cmsghdr) Control {
        char bytes[CMSG_SPACE(sizeof(int))];
    };
    std::array<Control, kCount> control;
    std::array<mmsghdr, kCount> msgs;
};

EventSocket::EventSocket() : slots_(new Slots) { // default-initialized: pages touched as used
    auto& s = *slots_;
    for (std::size_t i = 0; i < Slots::kCount; ++i) {
        s.iov[i] = {s.buffers[i].data(), Slots::kSize};
        msghdr& h = s.msgs[i].msg_hdr;
        h = msghdr{};
        h.msg_name = &s.addrs[i];
        h.msg_iov = &s.iov[i];
        h.msg_iovlen = 1;
        h.msg_control = s.control[i].bytes;
    }
}
EventSocket::EventSocket(EventSocket&&) noexcept = default;
EventSocket& EventSocket::operator=(EventSocket&&) noexcept = default;
EventSocket::~EventSocket() = default;

Result<Datagram> EventSocket::receive() {
    if (next_ < received_)
        return take(next_++);
    if (drained_ && received_ > 0) {
        // The last read found the queue empty: say so once, instead of asking again.
        received_ = next_ = 0;
        return fail_errno(EAGAIN);
    }
    auto& s = *slots_;
    for (std::size_t i = 0; i < Slots::kCount; ++i) { // the lengths the kernel wrote back
        s.msgs[i].msg_hdr.msg_namelen = sizeof s.addrs[i];
        s.msgs[i].msg_hdr.msg_controllen = sizeof s.control[i].bytes;
    }
    // An error after some datagrams (ENOBUFS) is kept by the kernel and returned by the next
    // call, with nothing received: the datagrams before the loss come first, in order.
    const int n = ::recvmmsg(fd(), s.msgs.data(), Slots::kCount, MSG_DONTWAIT, nullptr);
    received_ = next_ = 0;
    if (n <= 0)
        return n < 0 ? fail_errno() : fail_errno(EAGAIN);
    received_ = static_cast<std::size_t>(n);
    drained_ = received_ < Slots::kCount;
    return take(next_++);
}

Result<Datagram> EventSocket::take(std::size_t slot) {
    auto& s = *slots_;
    msghdr& h = s.msgs[slot].msg_hdr;
    // Only the kernel's are read: a datagram from another socket is handed on to be dropped
    // by its sender, whatever its size (a large one must not pass for a lost event).
    if ((h.msg_flags & MSG_TRUNC) && s.addrs[slot].nl_pid == 0)
        return fail(Errc::Truncated);
    Datagram d{
        std::span<const std::byte>(s.buffers[slot].data(),
                                   std::min<std::size_t>(s.msgs[slot].msg_len, Slots::kSize)),
        {},
        s.addrs[slot].nl_pid};
    for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
        if (c->cmsg_level == SOL_NETLINK && c->cmsg_type == NETLINK_LISTEN_ALL_NSID &&
            c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int origin;
            std::memcpy(&origin, CMSG_DATA(c), sizeof origin);
            d.origin = origin;
        }
    }
    return d;
}

Result<RequestSocket> RequestSocket::open() {
    auto sock = open_route_socket();
    if (!sock)
        return fail(sock.error());
    RequestSocket s;
    s.sock_ = std::move(*sock);
    s.portid_ = mnl_socket_get_portid(s.sock_.get());
    const int fd = s.fd();
    // Strict checking makes the kernel parse TARGET_NSID in dumps (ignored otherwise, 4.20+).
    if (set_int(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1) < 0)
        return fail_errno();
    set_int(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1); // best effort: only improves messages
    set_rcvbuf(fd, kRequestRcvbuf);
    s.buffer_.resize(kReceiveBuffer);
    // Prime max_recvmsg_len with a real >= 32 KiB receive: on Linux >= 6.10 a dump is one skb
    // sized by it (3776 bytes, 134 entries, on a fresh socket).
    if (auto r = s.get(ByPid{::getpid()}, std::nullopt); !r)
        return fail(r.error());
    return s;
}

Result<void> RequestSocket::send(std::span<const std::byte> bytes) {
    if (mnl_socket_sendto(sock_.get(), bytes.data(), bytes.size()) < 0)
        return fail_errno();
    return {};
}

Result<std::span<const std::byte>> RequestSocket::receive() {
    for (;;) {
        sockaddr_nl addr{};
        iovec iov{buffer_.data(), buffer_.size()};
        msghdr msg{};
        msg.msg_name = &addr;
        msg.msg_namelen = sizeof addr;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        const ssize_t n = ::recvmsg(fd(), &msg, MSG_DONTWAIT);
        if (n >= 0) {
            if (msg.msg_flags & MSG_TRUNC)
                return fail(Errc::Truncated);
            if (addr.nl_pid != 0)
                continue; // not from the kernel
            return std::span<const std::byte>(buffer_.data(), static_cast<std::size_t>(n));
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return fail_errno();
        pollfd p{fd(), POLLIN, 0};
        const int ready = ::poll(&p, 1, kReplyTimeoutMs);
        if (ready == 0)
            return fail(Errc::Timeout);
        if (ready < 0 && errno != EINTR)
            return fail_errno();
    }
}

Result<std::vector<Message>> RequestSocket::receive_messages() {
    auto bytes = receive();
    if (!bytes)
        return fail(bytes.error());
    return parse_datagram(*bytes);
}

Result<std::vector<NsidMessage>> RequestSocket::dump(std::optional<std::int32_t> target) {
    const std::uint32_t seq = ++seq_;
    if (auto r = send(build_dump(seq, target)); !r)
        return fail(r.error());
    std::vector<NsidMessage> entries;
    for (;;) {
        auto messages = receive_messages();
        if (!messages)
            return fail(messages.error());
        for (auto& m : *messages) {
            if (auto* n = std::get_if<NsidMessage>(&m)) {
                if (n->seq != seq)
                    continue; // a late reply to an earlier, abandoned request
                entries.push_back(*n);
            } else if (auto* s = std::get_if<Status>(&m)) {
                if (s->seq != seq)
                    continue;
                if (s->error < 0)
                    return fail_errno(-s->error);
                if (s->done)
                    return entries;
            }
        }
    }
}

Result<std::vector<ProbeReply>> RequestSocket::probe(std::span<const NsRef> peers,
                                                     std::optional<std::int32_t> target) {
    std::vector<ProbeReply> replies(peers.size());
    std::vector<std::byte> packet;
    for (std::size_t start = 0; start < peers.size(); start += kProbeChunk) {
        const std::size_t count = std::min(kProbeChunk, peers.size() - start);
        const std::uint32_t first = seq_ + 1;
        packet.clear();
        for (std::size_t i = 0; i < count; ++i) {
            auto m = build_get(++seq_, peers[start + i], target);
            packet.insert(packet.end(), m.begin(), m.end());
        }
        if (auto r = send(packet); !r)
            return fail(r.error());
        // The kernel answers every message of the datagram in order, one reply each.
        std::size_t answered = 0;
        while (answered < count) {
            auto messages = receive_messages();
            if (!messages)
                return fail(messages.error());
            for (auto& m : *messages) {
                std::uint32_t seq = 0;
                if (auto* n = std::get_if<NsidMessage>(&m))
                    seq = n->seq;
                else if (auto* s = std::get_if<Status>(&m))
                    seq = s->seq;
                else
                    continue;
                if (seq < first || seq >= first + count)
                    continue; // stale
                const std::size_t index = start + (seq - first);
                if (auto* s = std::get_if<Status>(&m)) {
                    if (s->error == 0 || s->done)
                        return fail(Errc::Protocol); // a GET is answered by a message, not an ACK
                    replies[index].error = -s->error;
                } else {
                    replies[index].message = std::get<NsidMessage>(m);
                }
                ++answered;
            }
        }
    }
    return replies;
}

Result<NsidMessage> RequestSocket::get(const NsRef& peer, std::optional<std::int32_t> target) {
    auto replies = probe(std::span<const NsRef>(&peer, 1), target);
    if (!replies)
        return fail(replies.error());
    if ((*replies)[0].error != 0)
        return fail_errno((*replies)[0].error);
    return (*replies)[0].message;
}

Result<void> RequestSocket::assign(std::int32_t nsid, const NsRef& peer) {
    const std::uint32_t seq = ++seq_;
    if (auto r = send(build_new(seq, nsid, peer)); !r)
        return fail(r.error());
    for (;;) {
        auto messages = receive_messages();
        if (!messages)
            return fail(messages.error());
        for (auto& m : *messages)
            if (auto* s = std::get_if<Status>(&m); s && s->seq == seq) {
                if (s->error < 0)
                    return fail_errno(-s->error);
                return {};
            }
    }
}

} // namespace nsidd::netlink
