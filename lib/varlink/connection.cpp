// SPDX-License-Identifier: LGPL-2.1-or-later
#include "varlink/connection.hpp"

#include <cerrno>

#include <sys/socket.h>

namespace nsidd::varlink {

Connection::Connection(UniqueFd fd, ConnectionLimits limits)
    : fd_(std::move(fd)), limits_(limits), framer_(limits.max_message) {
    ucred cred{};
    socklen_t len = sizeof cred;
    // Credentials as of connect(): the only basis for authorization (never the pid alone).
    if (::getsockopt(fd_.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
        uid_ = cred.uid;
}

Result<void> Connection::receive() {
    char buf[16384];
    for (;;) {
        const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            framer_.append(std::span<const char>(buf, static_cast<std::size_t>(n)));
            // Stop reading once a whole bound is held: the framer rejects it on next().
            if (framer_.buffered() > limits_.max_message)
                return {};
            continue;
        }
        if (n == 0)
            return fail(Errc::Closed);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return {};
        return fail_errno();
    }
}

Result<void> Connection::queue(std::string message) {
    // One reply may exceed the cap (a large List); a backlog of unread ones may not.
    if (pending_output() > 0 && pending_output() + message.size() > limits_.max_output)
        return fail(Errc::TooLarge);
    if (sent_ == output_.size()) {
        output_ = std::move(message); // no copy of a large answer
        sent_ = 0;
        return {};
    }
    output_ += message;
    return {};
}

void Connection::replace_output(std::string message) {
    // The message being sent is finished (up to its NUL): a client must never see half of one.
    std::size_t keep = sent_;
    if (sent_ > 0 && sent_ < output_.size() && output_[sent_ - 1] != '\0') {
        const auto end = output_.find('\0', sent_);
        keep = end == std::string::npos ? output_.size() : end + 1;
    }
    output_.resize(keep);
    output_.erase(0, sent_);
    sent_ = 0;
    output_ += message;
}

Result<void> Connection::flush() {
    while (sent_ < output_.size()) {
        const ssize_t n = ::send(fd_.get(), output_.data() + sent_, output_.size() - sent_,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            sent_ += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        return fail_errno(n < 0 ? errno : EPIPE);
    }
    if (sent_ == output_.size()) {
        // A large answer's buffer is returned now, not kept for the connection's life.
        if (output_.capacity() > kKeptOutputBytes) {
            released_ += output_.capacity();
            std::string().swap(output_); // (assigning an empty string would keep the buffer)
        } else {
            output_.clear();
        }
        sent_ = 0;
    } else if (sent_ > (1u << 20) && sent_ > output_.size() / 2) {
        output_.erase(0, sent_);
        sent_ = 0;
    }
    return {};
}

} // namespace nsidd::varlink
