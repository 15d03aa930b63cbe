// SPDX-License-Identifier: LGPL-2.1-or-later
// The metrics endpoint's request reader and answers (daemon/http_request.hpp).
#include <string>

#include <gtest/gtest.h>

#include "daemon/http_request.hpp"

namespace nsidd::daemon {
namespace {

using State = HttpRequest::State;

std::string serve(const HttpRequest& r, int* calls = nullptr) {
    return http_response(r, [&] {
        if (calls != nullptr)
            ++*calls;
        return std::string("nsidd_entries 3\n");
    });
}

TEST(Http, AScrapeInPiecesGetsTheText) {
    HttpRequest r;
    EXPECT_EQ(r.feed("GET /met"), State::More);
    EXPECT_EQ(r.feed("rics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n"), State::More);
    EXPECT_EQ(r.feed("\r\n"), State::Complete);
    EXPECT_TRUE(r.get());
    EXPECT_EQ(r.target(), "/metrics");
    int calls = 0;
    const std::string out = serve(r, &calls);
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << out;
    EXPECT_NE(out.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
    EXPECT_NE(out.find("Content-Length: 16\r\n"), std::string::npos) << out;
    EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
    EXPECT_EQ(out.substr(out.size() - 16), "nsidd_entries 3\n");
}

TEST(Http, HeadHasTheLengthButNoBody) {
    HttpRequest r;
    EXPECT_EQ(r.feed("HEAD /?x=1 HTTP/1.0\r\n\r\n"), State::Complete);
    const std::string out = serve(r);
    EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
    EXPECT_NE(out.find("Content-Length: 16\r\n"), std::string::npos);
    EXPECT_EQ(out.substr(out.size() - 4), "\r\n\r\n");
}

TEST(Http, OtherMethodsAndPathsAreRefusedWithoutRenderingTheText) {
    int calls = 0;
    {
        HttpRequest r;
        EXPECT_EQ(r.feed("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
                  State::Complete);
        const std::string out = serve(r, &calls);
        EXPECT_EQ(out.rfind("HTTP/1.1 405 ", 0), 0u) << out;
        EXPECT_NE(out.find("Allow: GET, HEAD\r\n"), std::string::npos);
    }
    {
        HttpRequest r;
        EXPECT_EQ(r.feed("GET /metricsx HTTP/1.1\r\n\r\n"), State::Complete);
        EXPECT_EQ(serve(r, &calls).rfind("HTTP/1.1 404 ", 0), 0u);
    }
    EXPECT_EQ(calls, 0);
}

TEST(Http, MalformedRequestsAreBadRequests) {
    const std::string binary("\x00\x01garbage\r\n\r\n", 13);
    for (const std::string& bad : {binary, std::string("GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
                                   std::string("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")}) {
        HttpRequest r;
        EXPECT_EQ(r.feed(bad), State::Bad) << bad;
        EXPECT_EQ(serve(r).rfind("HTTP/1.1 400 ", 0), 0u);
        // Once refused, nothing more is read.
        EXPECT_EQ(r.feed("GET / HTTP/1.1\r\n\r\n"), State::Bad);
    }
}

TEST(Http, UpgradesAreIgnoredAndConnectRefused) {
    {
        HttpRequest r; // the answer is plain HTTP: the upgrade is not taken
        EXPECT_EQ(r.feed("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
                  State::Complete);
        EXPECT_EQ(serve(r).rfind("HTTP/1.1 200 ", 0), 0u);
    }
    {
        HttpRequest r;
        EXPECT_EQ(r.feed("CONNECT example.org:443 HTTP/1.1\r\n\r\n"), State::Complete);
        EXPECT_EQ(serve(r).rfind("HTTP/1.1 405 ", 0), 0u);
    }
}

TEST(Http, RequestsPastTheBoundAreRefusedBeforeTheyEnd) {
    {
        HttpRequest r; // a long target
        EXPECT_EQ(r.feed("GET /" + std::string(2000, 'a')), State::TooLarge);
        EXPECT_EQ(serve(r).rfind("HTTP/1.1 431 ", 0), 0u);
    }
    {
        HttpRequest r; // headers that never end, a KiB at a time
        EXPECT_EQ(r.feed("GET / HTTP/1.1\r\n"), State::More);
        State s = State::More;
        int fed = 0;
        while (s == State::More && fed < 100) {
            s = r.feed("X-Pad: " + std::string(1017, 'p') + "\r\n");
            ++fed;
        }
        EXPECT_EQ(s, State::TooLarge);
        EXPECT_LE(fed, static_cast<int>(HttpRequest::kMaxBytes / 1024) + 1);
    }
    {
        HttpRequest r; // a body past the bound
        EXPECT_EQ(r.feed("POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"), State::More);
        EXPECT_EQ(r.feed(std::string(HttpRequest::kMaxBytes, 'b')), State::TooLarge);
    }
}

TEST(Http, OnlyTheFirstRequestOfAConnectionIsRead) {
    HttpRequest r;
    EXPECT_EQ(r.feed("GET /nothing HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n"),
              State::Complete);
    EXPECT_EQ(r.target(), "/nothing");
    EXPECT_EQ(r.feed("GET /metrics HTTP/1.1\r\n\r\n"), State::Complete);
    EXPECT_EQ(r.target(), "/nothing");
}

TEST(Http, ATextThatFailsToRenderIsAServerError) {
    HttpRequest r;
    EXPECT_EQ(r.feed("GET /metrics HTTP/1.1\r\n\r\n"), State::Complete);
    const std::string out = http_response(r, []() -> std::string { throw std::bad_alloc(); });
    EXPECT_EQ(out.rfind("HTTP/1.1 500 ", 0), 0u);
}

} // namespace
} // namespace nsidd::daemon
