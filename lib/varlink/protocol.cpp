// SPDX-License-Identifier: LGPL-2.1-or-later
#include "varlink/protocol.hpp"

#include <cstring>

namespace nsidd::varlink {
namespace {

// nlohmann's parser keeps its own stack, but destroying and walking deep values recurses:
// bound the depth first, with a scan that skips string contents.
bool within_depth(std::string_view text) {
    int depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\')
                ++i;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > kMaxDepth)
                return false;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return true;
}

CallError invalid(std::string_view parameter, bool fatal) {
    return CallError{std::string(kInvalidParameter), Json{{"parameter", parameter}}, fatal};
}

Json parse_json(std::string_view text) {
    if (!within_depth(text))
        return Json(Json::value_t::discarded);
    return Json::parse(text.begin(), text.end(), nullptr, false);
}

} // namespace

tl::expected<Call, CallError> parse_call(std::string_view message) {
    Json j = parse_json(message);
    // Not JSON, or not an object: the peer does not speak Varlink; answer once, then close.
    if (j.is_discarded() || !j.is_object())
        return tl::unexpected(invalid("", true));
    Call call;
    for (auto& [key, value] : j.items()) {
        if (key == "method") {
            if (!value.is_string())
                return tl::unexpected(invalid("method", false));
            call.method = value.get<std::string>();
        } else if (key == "parameters") {
            if (!value.is_object() && !value.is_null())
                return tl::unexpected(invalid("parameters", false));
            if (value.is_object())
                call.parameters = std::move(value);
        } else if (key == "oneway" || key == "more" || key == "upgrade") {
            if (!value.is_boolean())
                return tl::unexpected(invalid(key, false));
            (key == "oneway" ? call.oneway
             : key == "more" ? call.more
                             : call.upgrade) = value.get<bool>();
        }
        // Other keys are reserved for future protocol versions: ignored, as the spec says.
    }
    // "iface.Method": an interface name, a dot, and a method name.
    const auto dot = call.method.rfind('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 == call.method.size())
        return tl::unexpected(invalid("method", false));
    return call;
}

Result<Reply> parse_reply(std::string_view message) {
    Json j = parse_json(message);
    if (j.is_discarded() || !j.is_object())
        return fail(Errc::Malformed);
    Reply r;
    if (auto p = j.find("parameters"); p != j.end()) {
        if (!p->is_object())
            return fail(Errc::Malformed);
        r.parameters = std::move(*p);
    }
    if (auto e = j.find("error"); e != j.end()) {
        if (!e->is_string())
            return fail(Errc::Malformed);
        r.error = e->get<std::string>();
    }
    if (auto c = j.find("continues"); c != j.end()) {
        if (!c->is_boolean())
            return fail(Errc::Malformed);
        r.continues = c->get<bool>();
    }
    return r;
}

namespace {
std::string terminate(const Json& j) {
    // Invalid UTF-8 (e.g. a hostile parameter echoed back) is replaced, never thrown on.
    std::string s = j.dump(-1, ' ', false, Json::error_handler_t::replace);
    s.push_back('\0');
    return s;
}
} // namespace

std::string encode_reply(const Json& parameters, bool continues) {
    Json j{{"parameters", parameters}};
    if (continues)
        j["continues"] = true;
    return terminate(j);
}

std::string encode_error(std::string_view error, const Json& parameters) {
    return terminate(Json{{"error", error}, {"parameters", parameters}});
}

std::string encode_call(std::string_view method, const Json& parameters, bool more, bool oneway) {
    Json j{{"method", method}, {"parameters", parameters}};
    if (more)
        j["more"] = true;
    if (oneway)
        j["oneway"] = true;
    return terminate(j);
}

Result<std::optional<std::string>> Framer::next() {
    const char* base = buffer_.data() + start_;
    const std::size_t size = buffer_.size() - start_;
    const void* nul = std::memchr(base + scanned_, '\0', size - scanned_);
    if (nul == nullptr) {
        scanned_ = size;
        if (size > max_message_)
            return fail(Errc::TooLarge);
        if (start_ > 0 && start_ == buffer_.size()) {
            buffer_.clear();
            start_ = 0;
            scanned_ = 0;
        }
        return std::optional<std::string>();
    }
    const std::size_t len = static_cast<const char*>(nul) - base;
    if (len > max_message_)
        return fail(Errc::TooLarge);
    std::string message(base, len);
    start_ += len + 1;
    scanned_ = 0;
    // Compact once the consumed prefix dominates, so the buffer stays bounded.
    if (start_ >= buffer_.size() / 2) {
        buffer_.erase(0, start_);
        start_ = 0;
    }
    return std::optional<std::string>(std::move(message));
}

} // namespace nsidd::varlink
