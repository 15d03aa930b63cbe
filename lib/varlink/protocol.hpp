// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include "util/result.hpp"

namespace nsidd::varlink {

using Json = nlohmann::json;

/// Standard errors of the org.varlink.service interface.
inline constexpr std::string_view kInterfaceNotFound = "org.varlink.service.InterfaceNotFound";
inline constexpr std::string_view kMethodNotFound = "org.varlink.service.MethodNotFound";
inline constexpr std::string_view kInvalidParameter = "org.varlink.service.InvalidParameter";
inline constexpr std::string_view kExpectedMore = "org.varlink.service.ExpectedMore";

/// Largest JSON nesting accepted in a message; deeper input is rejected before parsing.
inline constexpr int kMaxDepth = 64;

/// One method call as sent by a client.
struct Call {
    std::string method;
    Json parameters = Json::object();
    bool oneway = false;
    bool more = false;
    bool upgrade = false;
};

/// Why a message is not a valid call: the error reply to send, and whether the stream can no
/// longer be trusted (the connection is then closed after the reply).
struct CallError {
    std::string error;
    Json parameters = Json::object();
    bool fatal = false;
};

/// Decodes one message (without its NUL). Never throws.
tl::expected<Call, CallError> parse_call(std::string_view message);

/// Decodes one reply message on the client side: parameters, error, continues. Never throws.
struct Reply {
    Json parameters = Json::object();
    std::string error; ///< empty when the call succeeded
    bool continues = false;
};
Result<Reply> parse_reply(std::string_view message);

/// A reply message, NUL-terminated, ready to send.
std::string encode_reply(const Json& parameters, bool continues = false);
/// An error reply, NUL-terminated.
std::string encode_error(std::string_view error, const Json& parameters = Json::object());
/// A call message, NUL-terminated.
std::string encode_call(std::string_view method, const Json& parameters, bool more = false,
                        bool oneway = false);

/// Splits a byte stream into NUL-terminated messages, holding at most `max_message` bytes of a
/// message not yet terminated.
class Framer {
public:
    explicit Framer(std::size_t max_message) : max_message_(max_message) {}

    /// Appends received bytes.
    void append(std::span<const char> bytes) { buffer_.append(bytes.data(), bytes.size()); }
    /// The next complete message, nullopt if none is complete yet, or Errc::TooLarge when the
    /// unterminated tail has grown past the bound.
    Result<std::optional<std::string>> next();
    /// Bytes held, complete or not.
    std::size_t buffered() const noexcept { return buffer_.size() - start_; }

private:
    std::string buffer_;
    std::size_t start_ = 0;
    std::size_t scanned_ = 0; // bytes after start_ already known to hold no NUL
    std::size_t max_message_;
};

} // namespace nsidd::varlink
