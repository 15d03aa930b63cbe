// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/http_request.hpp"

namespace nsidd::daemon {
namespace {

constexpr std::size_t kMaxTarget = 1024;
constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string answer(std::string_view status, std::string_view body, bool with_body,
                   std::string_view extra = {}) {
    std::string out;
    out.reserve(160 + (with_body ? body.size() : 0));
    out.append("HTTP/1.1 ").append(status).append("\r\nContent-Type: ").append(kContentType);
    out.append("\r\nContent-Length: ").append(std::to_string(body.size())).append("\r\n");
    out.append(extra).append("Connection: close\r\n\r\n");
    if (with_body)
        out += body;
    return out;
}

} // namespace

HttpRequest::HttpRequest() {
    http_parser_init(&parser_, HTTP_REQUEST);
    parser_.data = this;
    settings_.on_url = &HttpRequest::on_url;
    settings_.on_message_complete = &HttpRequest::on_complete;
}

int HttpRequest::on_url(http_parser* p, const char* at, std::size_t n) {
    auto* self = static_cast<HttpRequest*>(p->data);
    if (self->target_.size() + n > kMaxTarget) {
        self->state_ = State::TooLarge;
        return 1; // stops the parser
    }
    self->target_.append(at, n);
    return 0;
}

int HttpRequest::on_complete(http_parser* p) {
    auto* self = static_cast<HttpRequest*>(p->data);
    self->state_ = State::Complete;
    http_parser_pause(p, 1); // one request per connection: what follows is not read
    return 0;
}

HttpRequest::State HttpRequest::feed(std::string_view bytes) {
    if (state_ != State::More)
        return state_;
    if (bytes.size() > kMaxBytes - bytes_) {
        state_ = State::TooLarge;
        return state_;
    }
    bytes_ += bytes.size();
    http_parser_execute(&parser_, &settings_, bytes.data(), bytes.size());
    if (state_ != State::More)
        return state_;
    // An upgrade (CONNECT, Upgrade:) stops the parser before the message ends: not HTTP we serve.
    if (HTTP_PARSER_ERRNO(&parser_) != HPE_OK || parser_.upgrade)
        state_ = State::Bad;
    return state_;
}

bool HttpRequest::get() const noexcept {
    return parser_.method == HTTP_GET;
}
bool HttpRequest::head() const noexcept {
    return parser_.method == HTTP_HEAD;
}

std::string http_response(const HttpRequest& request, const std::function<std::string()>& metrics) {
    switch (request.state()) {
    case HttpRequest::State::More:
    case HttpRequest::State::Bad:
        return answer("400 Bad Request", "GET /metrics\n", true);
    case HttpRequest::State::TooLarge:
        return answer("431 Request Header Fields Too Large", "GET /metrics\n", true);
    case HttpRequest::State::Complete:
        break;
    }
    const bool head = request.head();
    if (!request.get() && !head)
        return answer("405 Method Not Allowed", "GET /metrics\n", true, "Allow: GET, HEAD\r\n");
    std::string_view path = request.target();
    path = path.substr(0, path.find('?')); // a scraper may add parameters; none mean anything
    if (path != "/metrics" && path != "/")
        return answer("404 Not Found", "GET /metrics\n", !head);
    std::string text;
    try {
        text = metrics();
    } catch (...) {
        return answer("500 Internal Server Error", "", true);
    }
    return answer("200 OK", text, !head);
}

} // namespace nsidd::daemon
