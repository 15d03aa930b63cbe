// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include <libmnl/libmnl.h>

#include "netlink/codec.hpp"
#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace nsidd::netlink {

using MnlSocket = std::unique_ptr<mnl_socket, FnDeleter<mnl_socket_close>>;

/// Receive buffer size that keeps a dump's first (and, on Linux >= 6.10, only) skb as large as
/// the kernel allows: netlink sizes dump skbs by the largest recvmsg() seen, capped at 32 KiB.
inline constexpr std::size_t kReceiveBuffer = 32768;
/// A plain dump reply holds at most this many 28-byte entries in one 32 KiB skb.
inline constexpr std::size_t kDumpCapacity = 1158;
/// A TARGET_NSID dump reply holds at most this many 36-byte entries in one 32 KiB skb.
inline constexpr std::size_t kTargetDumpCapacity = 901;

/// One datagram from the event socket.
struct Datagram {
    std::span<const std::byte> bytes;
    /// The listener netns's id for the netns the event happened in (NETLINK_LISTEN_ALL_NSID
    /// control message); nullopt when none was attached.
    std::optional<std::int32_t> origin;
    /// Sender port: 0 for the kernel.
    std::uint32_t sender = 0;
};

/// The RTNLGRP_NSID subscription. Non-blocking; the caller drains it until EAGAIN.
class EventSocket {
public:
    EventSocket(EventSocket&&) noexcept;
    EventSocket& operator=(EventSocket&&) noexcept;
    ~EventSocket();

    /// Opens a socket and joins RTNLGRP_NSID with a receive buffer of `rcvbuf` bytes, forced with
    /// SO_RCVBUFFORCE where permitted (else SO_RCVBUF, capped by net.core.rmem_max). Tries
    /// NETLINK_LISTEN_ALL_NSID; lacking CAP_NET_BROADCAST only loses foreign events.
    static Result<EventSocket> open(int rcvbuf);
    /// Takes over a socket passed by the service manager (already bound to the group).
    static Result<EventSocket> adopt(UniqueFd fd, int rcvbuf);

    int fd() const noexcept { return mnl_socket_get_fd(sock_.get()); }
    bool listen_all() const noexcept { return listen_all_; }
    bool rcvbuf_forced() const noexcept { return rcvbuf_forced_; }
    /// The receive buffer the kernel reports (SO_RCVBUF, doubled by the kernel).
    int rcvbuf() const noexcept { return rcvbuf_; }

    /// Returns the next datagram (its bytes valid until the next call). Fails with EAGAIN when
    /// the queue is empty and with ENOBUFS once after the kernel dropped events. Datagrams are
    /// read several to a system call (recvmmsg); a read that found the queue empty before its
    /// slots were full ends in EAGAIN without another call, and whatever arrived since wakes
    /// the caller's poll again.
    Result<Datagram> receive();

private:
    struct Slots; // the recvmmsg vectors and their buffers (socket.cpp)

    EventSocket();
    Result<void> configure(int rcvbuf);
    Result<Datagram> take(std::size_t slot);

    MnlSocket sock_;
    std::unique_ptr<Slots> slots_;
    std::size_t next_ = 0;     // the next slot to hand out
    std::size_t received_ = 0; // slots the last recvmmsg filled
    bool drained_ = true;      // the last recvmmsg found the queue empty
    bool listen_all_ = false;
    bool rcvbuf_forced_ = false;
    int rcvbuf_ = 0;
};

/// The answer to one GET probe: the reply message, or the kernel's error for that request
/// (ENOENT: no such id; EINVAL: the fd is not a netns).
struct ProbeReply {
    int error = 0; ///< 0 or a positive errno
    NsidMessage message;
};

/// Dumps and GETs on a socket of their own, with strict checking and extended ACKs.
class RequestSocket {
public:
    /// Opens the socket and primes it with one >= 32 KiB receive, so dumps use the largest skb.
    static Result<RequestSocket> open();

    int fd() const noexcept { return mnl_socket_get_fd(sock_.get()); }

    /// Dumps a table (ours, or `target`'s). A reply of kDumpCapacity (kTargetDumpCapacity)
    /// entries or more may be truncated: probe to be sure.
    Result<std::vector<NsidMessage>> dump(std::optional<std::int32_t> target);

    /// Sends one GET per peer, packed many to a datagram, and returns one reply per peer in the
    /// same order, each with its own error. Fails only when the exchange itself fails.
    Result<std::vector<ProbeReply>> probe(std::span<const NsRef> peers,
                                          std::optional<std::int32_t> target);

    /// Asks for one peer's id; kNotAssigned when it has none, ENOENT for an unknown NSID.
    Result<NsidMessage> get(const NsRef& peer, std::optional<std::int32_t> target);

    /// Sends RTM_NEWNSID and waits for the ACK.
    Result<void> assign(std::int32_t nsid, const NsRef& peer);

private:
    RequestSocket() = default;
    Result<void> send(std::span<const std::byte> bytes);
    // Receives one datagram, waiting up to a few seconds for the kernel.
    Result<std::span<const std::byte>> receive();
    // receive() and parse_datagram().
    Result<std::vector<Message>> receive_messages();

    MnlSocket sock_;
    std::vector<std::byte> buffer_;
    std::uint32_t portid_ = 0;
    std::uint32_t seq_ = 0;
};

} // namespace nsidd::netlink
