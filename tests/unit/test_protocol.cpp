// SPDX-License-Identifier: LGPL-2.1-or-later
#include "varlink/protocol.hpp"

#include <string>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "varlink/connection.hpp"

namespace nsidd::varlink {
namespace {

TEST(Protocol, ParsesACall) {
    auto c = parse_call(
        R"({"method":"io.nsidd.Registry.List","parameters":{"observer":"self"},"more":true})");
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(c->method, "io.nsidd.Registry.List");
    EXPECT_EQ(c->parameters["observer"], "self");
    EXPECT_TRUE(c->more);
    EXPECT_FALSE(c->oneway);
}

TEST(Protocol, ParametersMayBeAbsentOrNull) {
    auto a = parse_call(R"({"method":"a.B"})");
    ASSERT_TRUE(a.has_value());
    EXPECT_TRUE(a->parameters.is_object());
    auto b = parse_call(R"({"method":"a.B","parameters":null})");
    ASSERT_TRUE(b.has_value());
    EXPECT_TRUE(b->parameters.empty());
}

TEST(Protocol, RejectsWhatIsNotAVarlinkCall) {
    struct Case {
        const char* text;
        const char* parameter;
        bool fatal;
    } cases[] = {
        {"", "", true},
        {"not json", "", true},
        {"[1,2]", "", true},
        {"\"method\"", "", true},
        {R"({"method":"a.B")", "", true},
        {R"({})", "method", false},
        {R"({"method":42})", "method", false},
        {R"({"method":"NoInterface"})", "method", false},
        {R"({"method":"a."})", "method", false},
        {R"({"method":".B"})", "method", false},
        {R"({"method":"a.B","parameters":[1]})", "parameters", false},
        {R"({"method":"a.B","more":"yes"})", "more", false},
        {R"({"method":"a.B","oneway":1})", "oneway", false},
    };
    for (const auto& c : cases) {
        auto r = parse_call(c.text);
        ASSERT_FALSE(r.has_value()) << c.text;
        EXPECT_EQ(r.error().error, kInvalidParameter) << c.text;
        EXPECT_EQ(r.error().parameters["parameter"], c.parameter) << c.text;
        EXPECT_EQ(r.error().fatal, c.fatal) << c.text;
    }
}

TEST(Protocol, RejectsDeepNestingBeforeParsing) {
    std::string deep = R"({"method":"a.B","parameters":{"x":)";
    deep += std::string(100000, '[') + std::string(100000, ']') + "}}";
    EXPECT_FALSE(parse_call(deep).has_value());
    // Brackets inside strings do not count.
    std::string quoted = R"({"method":"a.B","parameters":{"x":")" + std::string(1000, '[') + "\"}}";
    EXPECT_TRUE(parse_call(quoted).has_value());
}

TEST(Protocol, EncodesRepliesWithTerminator) {
    const std::string r = encode_reply({{"a", 1}}, true);
    ASSERT_EQ(r.back(), '\0');
    auto parsed = parse_reply(std::string_view(r.data(), r.size() - 1));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_TRUE(parsed->continues);
    EXPECT_EQ(parsed->parameters["a"], 1);
    const std::string e = encode_error(kMethodNotFound, {{"method", "x.Y"}});
    auto pe = parse_reply(std::string_view(e.data(), e.size() - 1));
    ASSERT_TRUE(pe.has_value());
    EXPECT_EQ(pe->error, kMethodNotFound);
    EXPECT_FALSE(pe->continues);
}

TEST(Protocol, InvalidUtf8IsReplacedNotThrown) {
    const std::string r =
        encode_error(kInvalidParameter, {{"parameter", std::string("\xff\xfe", 2)}});
    EXPECT_EQ(r.back(), '\0');
}

TEST(Framer, SplitsAndReassembles) {
    Framer f(100);
    const std::string stream = std::string("{\"a\":1}") + '\0' + "{\"b\"";
    f.append(stream);
    auto m = f.next();
    ASSERT_TRUE(m && *m);
    EXPECT_EQ(**m, "{\"a\":1}");
    m = f.next();
    ASSERT_TRUE(m);
    EXPECT_FALSE(*m);
    f.append(std::string(":2}") + '\0');
    m = f.next();
    ASSERT_TRUE(m && *m);
    EXPECT_EQ(**m, "{\"b\":2}");
    EXPECT_EQ(f.buffered(), 0u);
}

TEST(Framer, BoundsAnUnterminatedMessage) {
    Framer f(64);
    f.append(std::string(65, 'x'));
    auto m = f.next();
    ASSERT_FALSE(m.has_value());
    EXPECT_EQ(m.error(), make_error_code(Errc::TooLarge));
}

TEST(Framer, BoundsATerminatedMessage) {
    Framer f(8);
    f.append(std::string(20, 'x') + '\0');
    EXPECT_FALSE(f.next().has_value());
}

TEST(Framer, ManySmallMessagesStayBounded) {
    Framer f(64);
    for (int i = 0; i < 10000; ++i) {
        f.append(std::string("{}") + '\0');
        auto m = f.next();
        ASSERT_TRUE(m && *m);
    }
    EXPECT_EQ(f.buffered(), 0u);
}

// Reads what `fd` holds until `want` bytes arrived, flushing `c` between reads.
std::string drain(Connection& c, int fd, std::size_t want) {
    std::string got;
    char buf[65536];
    while (got.size() < want) {
        EXPECT_TRUE(c.flush().has_value());
        const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0)
            got.append(buf, static_cast<std::size_t>(n));
        else if (n == 0 || errno != EAGAIN)
            break;
    }
    EXPECT_TRUE(c.flush().has_value());
    return got;
}

TEST(Connection, SendsAnswersWholeInOrderAndFreesALargeBufferOnceSent) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    UniqueFd client(sv[1]);
    Connection c{UniqueFd(sv[0]), ConnectionLimits{1024, 1 << 20}};

    const std::string large(300 * 1024, 'x');  // past what the socket takes at once
    ASSERT_TRUE(c.queue(large).has_value());   // taken whole: nothing was pending
    ASSERT_TRUE(c.queue("small").has_value()); // appended behind it
    EXPECT_GT(c.pending_output(), 0u);
    EXPECT_EQ(drain(c, client.get(), large.size() + 5), large + "small");
    EXPECT_EQ(c.pending_output(), 0u);
    EXPECT_GE(c.take_released(), large.size()) << "the large buffer is freed once sent";
    EXPECT_EQ(c.take_released(), 0u);

    ASSERT_TRUE(c.queue("tiny").has_value());
    EXPECT_EQ(drain(c, client.get(), 4), "tiny");
    EXPECT_EQ(c.take_released(), 0u) << "a small buffer is kept for the next answer";
}

} // namespace
} // namespace nsidd::varlink
