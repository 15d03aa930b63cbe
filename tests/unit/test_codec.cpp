// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netlink/codec.hpp"
#include "test_data.hpp"

#include <cstring>
#include <fstream>
#include <string>

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <gtest/gtest.h>

namespace nsidd::netlink {
namespace {

std::vector<std::byte> load(const std::string& name) {
    auto bytes = nsidd::testing::load_hex(name);
    EXPECT_FALSE(bytes.empty()) << name;
    return bytes;
}

std::vector<Message> parse_ok(const std::vector<std::byte>& bytes) {
    auto r = parse_datagram(bytes);
    EXPECT_TRUE(r.has_value()) << r.error().message();
    return r ? *r : std::vector<Message>{};
}

void put32(std::vector<std::byte>& b, std::size_t off, std::uint32_t v) {
    std::memcpy(b.data() + off, &v, sizeof v);
}

TEST(Codec, KernelNewEvent) {
    auto m = parse_ok(load("event_new"));
    ASSERT_EQ(m.size(), 1u);
    const auto& n = std::get<NsidMessage>(m[0]);
    EXPECT_EQ(n.type, RTM_NEWNSID);
    EXPECT_EQ(n.nsid, 5);
    EXPECT_FALSE(n.current_nsid);
    // Caused by `ip netns set`: the requester's port and sequence, not 0 (docs/kernel.md,
    // "Events").
    EXPECT_NE(n.portid, 0u);
}

TEST(Codec, KernelDelEvent) {
    auto m = parse_ok(load("event_del"));
    ASSERT_EQ(m.size(), 1u);
    const auto& n = std::get<NsidMessage>(m[0]);
    EXPECT_EQ(n.type, RTM_DELNSID);
    EXPECT_EQ(n.nsid, 5);
    EXPECT_EQ(n.portid, 0u);
    EXPECT_EQ(n.seq, 0u);
}

TEST(Codec, DumpEntriesAndDoneInOneDatagram) {
    auto m = parse_ok(load("dump_reply"));
    ASSERT_EQ(m.size(), 3u);
    EXPECT_EQ(std::get<NsidMessage>(m[0]).nsid, 0);
    EXPECT_EQ(std::get<NsidMessage>(m[1]).nsid, 5);
    EXPECT_TRUE(std::get<NsidMessage>(m[0]).flags & NLM_F_MULTI);
    const auto& done = std::get<Status>(m[2]);
    EXPECT_TRUE(done.done);
    EXPECT_EQ(done.error, 0);
    EXPECT_EQ(done.seq, 1u);
}

TEST(Codec, TargetDumpCarriesCurrentNsid) {
    auto m = parse_ok(load("dump_target_reply"));
    ASSERT_EQ(m.size(), 2u);
    const auto& n = std::get<NsidMessage>(m[0]);
    EXPECT_EQ(n.nsid, 7);
    ASSERT_TRUE(n.current_nsid);
    EXPECT_EQ(*n.current_nsid, 0);
}

TEST(Codec, DumpErrorInsideDoneWithExtack) {
    auto m = parse_ok(load("dump_bad_target"));
    ASSERT_EQ(m.size(), 1u);
    const auto& s = std::get<Status>(m[0]);
    EXPECT_TRUE(s.done);
    EXPECT_EQ(s.error, -22);
    EXPECT_EQ(s.extack, "Invalid target network namespace id");
}

TEST(Codec, GetErrorWithEchoedRequestAndExtack) {
    auto m = parse_ok(load("get_enoent"));
    ASSERT_EQ(m.size(), 1u);
    const auto& s = std::get<Status>(m[0]);
    EXPECT_FALSE(s.done);
    EXPECT_EQ(s.error, -2);
    EXPECT_EQ(s.seq, 4u);
    EXPECT_EQ(s.extack, "Peer netns reference is invalid");
}

TEST(Codec, GetReplies) {
    auto t = parse_ok(load("get_target_reply"));
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(std::get<NsidMessage>(t[0]).nsid, 7);
    EXPECT_EQ(std::get<NsidMessage>(t[0]).current_nsid, 0);
    auto f = parse_ok(load("get_fd_reply"));
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(std::get<NsidMessage>(f[0]).seq, 6u);
}

TEST(Codec, RejectsTruncatedHeader) {
    auto b = load("event_new");
    b.resize(10);
    EXPECT_EQ(parse_datagram(b).error(), make_error_code(Errc::Truncated));
}

TEST(Codec, RejectsLengthPastBuffer) {
    auto b = load("event_new");
    put32(b, 0, 29);
    EXPECT_EQ(parse_datagram(b).error(), make_error_code(Errc::Truncated));
}

TEST(Codec, RejectsHugeLength) {
    // libmnl 1.0.4 computes with int and reads out of bounds on nlmsg_len >= 2^31.
    for (std::uint32_t len : {0x80000000u, 0xffffffffu, 0xfffffff0u}) {
        auto b = load("event_new");
        put32(b, 0, len);
        EXPECT_FALSE(parse_datagram(b).has_value()) << len;
    }
}

TEST(Codec, RejectsLengthBelowHeader) {
    auto b = load("event_new");
    put32(b, 0, 8);
    EXPECT_EQ(parse_datagram(b).error(), make_error_code(Errc::Malformed));
}

TEST(Codec, RejectsAttributeOverrun) {
    auto b = load("event_new");
    // nla_len of NETNSA_NSID (offset 20) claims more than the message holds.
    b[20] = std::byte{64};
    EXPECT_EQ(parse_datagram(b).error(), make_error_code(Errc::Malformed));
    b[20] = std::byte{2}; // shorter than an attribute header
    EXPECT_EQ(parse_datagram(b).error(), make_error_code(Errc::Malformed));
}

TEST(Codec, RejectsWrongAttributeSize) {
    auto b = load("event_new");
    // NETNSA_NSID with a 2-byte payload: the header says 6, the message stays 28 bytes.
    b[20] = std::byte{6};
    EXPECT_EQ(parse_datagram(b).error(), make_error_code(Errc::Malformed));
}

TEST(Codec, RejectsMissingNsid) {
    auto b = load("event_new");
    b[22] = std::byte{42}; // the only attribute becomes an unknown one
    EXPECT_EQ(parse_datagram(b).error(), make_error_code(Errc::Malformed));
}

TEST(Codec, SkipsUnknownAttributes) {
    auto b = load("event_new");
    const std::byte extra[] = {std::byte{8}, std::byte{0}, std::byte{42}, std::byte{0},
                               std::byte{1}, std::byte{2}, std::byte{3},  std::byte{4}};
    b.insert(b.begin() + 20, std::begin(extra), std::end(extra));
    put32(b, 0, static_cast<std::uint32_t>(b.size()));
    auto m = parse_ok(b);
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(std::get<NsidMessage>(m[0]).nsid, 5);
}

TEST(Codec, RejectsTruncatedError) {
    auto b = load("get_enoent");
    put32(b, 0, 18);
    b.resize(18);
    EXPECT_EQ(parse_datagram(b).error(), make_error_code(Errc::Truncated));
    auto c = load("get_enoent");
    put32(c, 20 + 0, 0x7fffffff); // echoed request length past the message
    EXPECT_EQ(parse_datagram(c).error(), make_error_code(Errc::Malformed));
}

TEST(Codec, KeepsOtherTypes) {
    auto b = load("event_new");
    b[4] = std::byte{RTM_NEWLINK};
    b[5] = std::byte{0};
    auto m = parse_ok(b);
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(std::get<Other>(m[0]).type, RTM_NEWLINK);
}

TEST(Codec, BuildsRequestsTheKernelParses) {
    auto dump = build_dump(9, 5);
    ASSERT_EQ(dump.size(), 28u);
    nlmsghdr h;
    std::memcpy(&h, dump.data(), sizeof h);
    EXPECT_EQ(h.nlmsg_type, RTM_GETNSID);
    EXPECT_EQ(h.nlmsg_flags, NLM_F_REQUEST | NLM_F_DUMP);
    EXPECT_EQ(h.nlmsg_seq, 9u);
    EXPECT_EQ(build_dump(1, std::nullopt).size(), 20u);
    EXPECT_EQ(build_get(1, ByNsid{3}, 4).size(), 36u);
    EXPECT_EQ(build_get(1, ByFd{3}, std::nullopt).size(), 28u);
    auto n = build_new(2, -1, ByPid{1});
    std::memcpy(&h, n.data(), sizeof h);
    EXPECT_EQ(h.nlmsg_type, RTM_NEWNSID);
    EXPECT_TRUE(h.nlmsg_flags & NLM_F_ACK);
    // A GET by NSID round-trips through our own parser's attribute walk.
    auto get = build_get(7, ByNsid{12345}, std::nullopt);
    get[4] = std::byte{RTM_NEWNSID};
    auto m = parse_ok(get);
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(std::get<NsidMessage>(m[0]).nsid, 12345);
}

} // namespace
} // namespace nsidd::netlink
