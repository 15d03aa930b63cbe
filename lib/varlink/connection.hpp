// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <utility>

#include <sys/types.h>

#include "util/result.hpp"
#include "util/unique_fd.hpp"
#include "varlink/protocol.hpp"

namespace nsidd::varlink {

/// Bounds that keep one client from growing the server's memory.
struct ConnectionLimits {
    std::size_t max_message = 0; ///< largest request, NUL excluded
    std::size_t max_output = 0;  ///< unsent reply bytes before the client counts as stuck
};

/// The server side of one client connection: input framing and buffered, non-blocking output.
/// It does no dispatch; the owner reads calls, answers them and flushes.
class Connection {
public:
    static constexpr std::size_t kKeptOutputBytes = 64 * 1024;
    /// Takes an accepted socket (non-blocking) and reads the peer's credentials.
    Connection(UniqueFd fd, ConnectionLimits limits);

    int fd() const noexcept { return fd_.get(); }
    uid_t uid() const noexcept { return uid_; }

    /// Reads what the socket holds. Fails with Errc::Closed at end of stream.
    Result<void> receive();
    /// The next complete request, nullopt if none; Errc::TooLarge past max_message.
    Result<std::optional<std::string>> next_message() { return framer_.next(); }

    /// Queues a reply. Fails with Errc::TooLarge, queuing nothing, when unsent output is already
    /// waiting and would pass max_output with this message.
    Result<void> queue(std::string message);
    /// Drops the unsent backlog (the message being sent is finished first) and queues
    /// `message` in its place: a last error for a client too slow to read its stream.
    void replace_output(std::string message);
    /// Writes queued output until done or the socket is full.
    Result<void> flush();
    std::size_t pending_output() const noexcept { return output_.size() - sent_; }
    /// Bytes of output buffers freed once sent since the last call (a buffer past 64 KiB is
    /// not kept): the owner may return them to the system.
    std::size_t take_released() noexcept { return std::exchange(released_, 0); }
    std::size_t buffered_input() const noexcept { return framer_.buffered(); }

private:
    UniqueFd fd_;
    ConnectionLimits limits_;
    Framer framer_;
    std::string output_;
    std::size_t sent_ = 0;
    std::size_t released_ = 0;
    uid_t uid_ = static_cast<uid_t>(-1);
};

} // namespace nsidd::varlink
