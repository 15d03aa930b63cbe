// SPDX-License-Identifier: LGPL-2.1-or-later
// libFuzzer target: the bytes a metrics scraper sends. The request reader must end in one state
// within its byte bound, and the answer must be a well-formed HTTP/1.1 response whatever it read.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "daemon/http_request.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using nsidd::daemon::HttpRequest;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    HttpRequest request;
    // In three pieces, as a socket might deliver them.
    const std::size_t a = size / 3, b = 2 * size / 3;
    auto state = request.feed(input.substr(0, a));
    state = request.feed(input.substr(a, b - a));
    state = request.feed(input.substr(b));
    if (state == HttpRequest::State::Complete && request.target().size() > HttpRequest::kMaxBytes)
        std::abort();
    bool served = false;
    const std::string out =
        nsidd::daemon::http_response(request, [&] { return served = true, std::string("m 1\n"); });
    if (out.rfind("HTTP/1.1 ", 0) != 0 || out.find("\r\n\r\n") == std::string::npos ||
        out.find("Connection: close\r\n") == std::string::npos)
        std::abort();
    if (served && state != HttpRequest::State::Complete)
        std::abort();
    return 0;
}
