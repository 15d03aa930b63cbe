// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include <sys/types.h>

#include "util/result.hpp"

namespace nsidd::netlink {

/// NETNSA_NSID_NOT_ASSIGNED: "this table has no id for that peer".
inline constexpr std::int32_t kNotAssigned = -1;
/// RTNLGRP_NSID, the multicast group of nsid notifications.
inline constexpr unsigned kGroupNsid = 28;

/// One RTM_NEWNSID / RTM_DELNSID message: an event, a dump entry or a GET reply.
struct NsidMessage {
    std::uint16_t type = 0; ///< RTM_NEWNSID or RTM_DELNSID
    std::uint16_t flags = 0;
    std::uint32_t seq = 0;
    std::uint32_t portid = 0;
    std::int32_t nsid = kNotAssigned;
    std::optional<std::int32_t> current_nsid; ///< NETNSA_CURRENT_NSID, when present
};

/// NLMSG_ERROR (error 0 is an ACK) or the status carried by NLMSG_DONE.
struct Status {
    bool done = false; ///< NLMSG_DONE rather than NLMSG_ERROR
    int error = 0;     ///< 0 or a negative errno, as the kernel sends it
    std::uint32_t seq = 0;
    std::string extack; ///< NLMSGERR_ATTR_MSG, when the kernel sent one
};

/// A message of another type (NLMSG_NOOP, other rtnetlink families), kept only for counting.
struct Other {
    std::uint16_t type = 0;
    std::uint32_t seq = 0;
};

using Message = std::variant<NsidMessage, Status, Other>;

/// Splits one datagram into messages and decodes them. Every length is checked against the
/// bytes actually present before anything is read (libmnl trusts nlmsg_len); unknown attributes
/// are skipped, known ones validated. Fails with Errc::Truncated or Errc::Malformed; then nothing
/// of the datagram is returned, since a stream with a hole must be resynchronized anyway.
Result<std::vector<Message>> parse_datagram(std::span<const std::byte> bytes);

/// Which namespace a request names (by self's id, an fd or a pid).
struct ByNsid {
    std::int32_t nsid;
};
struct ByFd {
    int fd;
};
struct ByPid {
    pid_t pid;
};
using NsRef = std::variant<ByNsid, ByFd, ByPid>;

/// RTM_GETNSID with NLM_F_DUMP, optionally for another table (NETNSA_TARGET_NSID).
std::vector<std::byte> build_dump(std::uint32_t seq, std::optional<std::int32_t> target);
/// RTM_GETNSID for one peer, optionally in another table (NETNSA_TARGET_NSID).
std::vector<std::byte> build_get(std::uint32_t seq, const NsRef& peer,
                                 std::optional<std::int32_t> target);
/// RTM_NEWNSID giving `peer` the id `nsid` (negative: the kernel picks the lowest free id).
std::vector<std::byte> build_new(std::uint32_t seq, std::int32_t nsid, const NsRef& peer);

} // namespace nsidd::netlink
