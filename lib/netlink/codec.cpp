// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netlink/codec.hpp"

#include <cstring>

#include <linux/net_namespace.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <libmnl/libmnl.h>

namespace nsidd::netlink {
namespace {

constexpr std::size_t kHeader = sizeof(nlmsghdr);
constexpr std::size_t kGenHeader = NLMSG_ALIGN(sizeof(rtgenmsg));

template <typename T> T load(const std::byte* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// Walks attributes in [p, p+len) without libmnl, so that every bound is ours. Calls fn(type,
// payload) per attribute; fails when an attribute runs past the end.
template <typename Fn> Result<void> for_each_attr(const std::byte* p, std::size_t len, Fn&& fn) {
    while (len >= sizeof(nlattr)) {
        const auto attr = load<nlattr>(p);
        if (attr.nla_len < sizeof(nlattr) || attr.nla_len > len)
            return fail(Errc::Malformed);
        auto r = fn(static_cast<std::uint16_t>(attr.nla_type & NLA_TYPE_MASK),
                    std::span<const std::byte>(p + sizeof(nlattr), attr.nla_len - sizeof(nlattr)));
        if (!r)
            return r;
        const std::size_t step = NLA_ALIGN(attr.nla_len);
        if (step >= len)
            return {};
        p += step;
        len -= step;
    }
    // Trailing bytes shorter than an attribute header: the kernel never sends them.
    if (len != 0)
        return fail(Errc::Malformed);
    return {};
}

Result<std::int32_t> parse_s32(std::span<const std::byte> payload) {
    if (payload.size() != sizeof(std::int32_t))
        return fail(Errc::Malformed);
    return load<std::int32_t>(payload.data());
}

Result<NsidMessage> parse_nsid(const nlmsghdr& h, const std::byte* body, std::size_t len) {
    if (len < kGenHeader)
        return fail(Errc::Truncated);
    NsidMessage m{h.nlmsg_type, h.nlmsg_flags, h.nlmsg_seq, h.nlmsg_pid, kNotAssigned, {}};
    bool has_nsid = false;
    auto r = for_each_attr(body + kGenHeader, len - kGenHeader,
                           [&](std::uint16_t type, std::span<const std::byte> v) -> Result<void> {
                               if (type != NETNSA_NSID && type != NETNSA_CURRENT_NSID)
                                   return {}; // unknown or irrelevant: skip
                               auto value = parse_s32(v);
                               if (!value)
                                   return fail(value.error());
                               if (type == NETNSA_NSID) {
                                   m.nsid = *value;
                                   has_nsid = true;
                               } else {
                                   m.current_nsid = *value;
                               }
                               return {};
                           });
    if (!r)
        return fail(r.error());
    if (!has_nsid)
        return fail(Errc::Malformed);
    return m;
}

// The extack message of an NLMSG_ERROR or NLMSG_DONE, from the TLVs at [p, p+len).
Result<std::string> parse_extack(const std::byte* p, std::size_t len) {
    std::string text;
    auto r = for_each_attr(p, len,
                           [&](std::uint16_t type, std::span<const std::byte> v) -> Result<void> {
                               if (type != NLMSGERR_ATTR_MSG)
                                   return {};
                               const auto* chars = reinterpret_cast<const char*>(v.data());
                               text.assign(chars, strnlen(chars, v.size()));
                               return {};
                           });
    if (!r)
        return fail(r.error());
    return text;
}

Result<Status> parse_status(const nlmsghdr& h, const std::byte* body, std::size_t len) {
    Status s{h.nlmsg_type == NLMSG_DONE, 0, h.nlmsg_seq, {}};
    if (s.done) {
        // A DONE may carry no payload at all (old kernels); otherwise an int and maybe TLVs.
        if (len == 0)
            return s;
        if (len < sizeof(int))
            return fail(Errc::Truncated);
        s.error = load<int>(body);
        if (h.nlmsg_flags & NLM_F_ACK_TLVS) {
            auto text = parse_extack(body + NLMSG_ALIGN(sizeof(int)),
                                     len - std::min(len, NLMSG_ALIGN(sizeof(int))));
            if (!text)
                return fail(text.error());
            s.extack = std::move(*text);
        }
        return s;
    }
    if (len < sizeof(nlmsgerr))
        return fail(Errc::Truncated);
    s.error = load<int>(body);
    if (s.error > 0)
        return fail(Errc::Malformed);
    if (h.nlmsg_flags & NLM_F_ACK_TLVS) {
        // The original request follows: its header only when capped, else the whole request.
        std::size_t offset = sizeof(int) + kHeader;
        if (!(h.nlmsg_flags & NLM_F_CAPPED)) {
            const auto echoed = load<nlmsghdr>(body + sizeof(int));
            if (echoed.nlmsg_len < kHeader || echoed.nlmsg_len > len - sizeof(int))
                return fail(Errc::Malformed);
            offset = sizeof(int) + echoed.nlmsg_len;
        }
        offset = NLMSG_ALIGN(offset);
        if (offset < len) {
            auto text = parse_extack(body + offset, len - offset);
            if (!text)
                return fail(text.error());
            s.extack = std::move(*text);
        }
    }
    return s;
}

// Serializes a request: header, rtgenmsg, then s32 attributes.
class Builder {
public:
    Builder(std::uint16_t type, std::uint16_t flags, std::uint32_t seq) {
        nlh_ = mnl_nlmsg_put_header(buf_);
        nlh_->nlmsg_type = type;
        nlh_->nlmsg_flags = static_cast<std::uint16_t>(NLM_F_REQUEST | flags);
        nlh_->nlmsg_seq = seq;
        auto* gen = static_cast<rtgenmsg*>(mnl_nlmsg_put_extra_header(nlh_, sizeof(rtgenmsg)));
        gen->rtgen_family = AF_UNSPEC;
    }
    Builder& s32(std::uint16_t type, std::int32_t value) {
        mnl_attr_put_u32(nlh_, type, static_cast<std::uint32_t>(value));
        return *this;
    }
    Builder& peer(const NsRef& peer) {
        std::visit(
            [this](const auto& p) {
                using T = std::decay_t<decltype(p)>;
                if constexpr (std::is_same_v<T, ByNsid>)
                    s32(NETNSA_NSID, p.nsid);
                else if constexpr (std::is_same_v<T, ByFd>)
                    s32(NETNSA_FD, p.fd);
                else
                    s32(NETNSA_PID, p.pid);
            },
            peer);
        return *this;
    }
    std::vector<std::byte> take() const {
        const auto* p = reinterpret_cast<const std::byte*>(nlh_);
        return {p, p + nlh_->nlmsg_len};
    }

private:
    alignas(nlmsghdr) char buf_[128]{};
    nlmsghdr* nlh_;
};

} // namespace

Result<std::vector<Message>> parse_datagram(std::span<const std::byte> bytes) {
    std::vector<Message> out;
    const std::byte* p = bytes.data();
    std::size_t left = bytes.size();
    while (left > 0) {
        if (left < kHeader)
            return fail(Errc::Truncated);
        const auto h = load<nlmsghdr>(p);
        // nlmsg_len is checked against what was received before it is used: this also rejects
        // lengths >= 2^31, on which libmnl 1.0.4's signed arithmetic reads out of bounds.
        if (h.nlmsg_len < kHeader)
            return fail(Errc::Malformed);
        if (h.nlmsg_len > left)
            return fail(Errc::Truncated);
        const std::byte* body = p + kHeader;
        const std::size_t body_len = h.nlmsg_len - kHeader;
        switch (h.nlmsg_type) {
        case RTM_NEWNSID:
        case RTM_DELNSID: {
            auto m = parse_nsid(h, body, body_len);
            if (!m)
                return fail(m.error());
            out.emplace_back(*m);
            break;
        }
        case NLMSG_ERROR:
        case NLMSG_DONE: {
            auto s = parse_status(h, body, body_len);
            if (!s)
                return fail(s.error());
            out.emplace_back(std::move(*s));
            break;
        }
        default:
            out.emplace_back(Other{h.nlmsg_type, h.nlmsg_seq});
            break;
        }
        const std::size_t step = NLMSG_ALIGN(h.nlmsg_len);
        if (step >= left)
            break;
        p += step;
        left -= step;
    }
    return out;
}

std::vector<std::byte> build_dump(std::uint32_t seq, std::optional<std::int32_t> target) {
    Builder b(RTM_GETNSID, NLM_F_DUMP, seq);
    if (target)
        b.s32(NETNSA_TARGET_NSID, *target);
    return b.take();
}

std::vector<std::byte> build_get(std::uint32_t seq, const NsRef& peer,
                                 std::optional<std::int32_t> target) {
    Builder b(RTM_GETNSID, 0, seq);
    b.peer(peer);
    if (target)
        b.s32(NETNSA_TARGET_NSID, *target);
    return b.take();
}

std::vector<std::byte> build_new(std::uint32_t seq, std::int32_t nsid, const NsRef& peer) {
    Builder b(RTM_NEWNSID, NLM_F_ACK, seq);
    b.s32(NETNSA_NSID, nsid).peer(peer);
    return b.take();
}

} // namespace nsidd::netlink
