// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <string>
#include <string_view>

#include "util/result.hpp"
#include "util/unique_fd.hpp"
#include "varlink/protocol.hpp"

namespace nsidd::varlink {

/// A blocking Varlink client over a Unix stream socket.
class Client {
public:
    /// Connects to the socket at `path`; fails with the connect() errno.
    static Result<Client> connect(const std::string& path);

    /// Sends one call.
    Result<void> send(std::string_view method, const Json& parameters, bool more = false);
    /// Waits for the next reply (or error reply). Errc::Closed when the server hung up.
    Result<Reply> receive();
    /// send() then receive().
    Result<Reply> call(std::string_view method, const Json& parameters = Json::object());

private:
    explicit Client(UniqueFd fd) : fd_(std::move(fd)), framer_(kMaxReply) {}
    static constexpr std::size_t kMaxReply = 64u << 20; // Errc::TooLarge past it

    UniqueFd fd_;
    Framer framer_;
};

} // namespace nsidd::varlink
