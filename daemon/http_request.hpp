// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include <http_parser.h>

namespace nsidd::daemon {

/// One HTTP/1.x request read off a connection, parsed by http-parser (nodejs's, as Debian
/// ships it). No I/O: bytes go in as they arrive, and a request that is malformed or larger
/// than its bound is refused before it is complete. What the exporter answers is decided by
/// http_response(); both are fuzzed (tests/fuzz/fuzz_http.cpp).
class HttpRequest {
public:
    /// Bytes a request may take, head and body together (a scrape is a few hundred).
    static constexpr std::size_t kMaxBytes = 8192;

    enum class State { More, Complete, Bad, TooLarge };

    HttpRequest();
    HttpRequest(const HttpRequest&) = delete;
    HttpRequest& operator=(const HttpRequest&) = delete;

    /// Reads the next bytes. Bytes after a complete request are ignored (the connection closes
    /// after one answer); once Bad or TooLarge, it stays so.
    State feed(std::string_view bytes);
    State state() const noexcept { return state_; }
    /// GET or HEAD (meaningful once Complete).
    bool get() const noexcept;
    bool head() const noexcept;
    /// The request target, e.g. "/metrics" (once Complete).
    const std::string& target() const noexcept { return target_; }

private:
    static int on_url(http_parser* p, const char* at, std::size_t n);
    static int on_complete(http_parser* p);

    http_parser parser_{};
    http_parser_settings settings_{};
    State state_ = State::More;
    std::size_t bytes_ = 0;
    std::string target_;
};

/// The whole answer to `request` (status line, headers, body; "Connection: close"): the text
/// that `metrics()` returns for GET /metrics or /, HEAD the same without its body, 405 for other
/// methods, 404 for other paths, 400 for a malformed request and 431 for one too large.
/// `metrics()` is called only when its text is served; if it throws, the answer is a 500.
std::string http_response(const HttpRequest& request, const std::function<std::string()>& metrics);

} // namespace nsidd::daemon
