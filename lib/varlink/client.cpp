// SPDX-License-Identifier: LGPL-2.1-or-later
#include "varlink/client.hpp"

#include <cerrno>
#include <cstring>

#include <sys/socket.h>
#include <sys/un.h>

namespace nsidd::varlink {

Result<Client> Client::connect(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
        return fail_errno(ENAMETOOLONG);
    std::memcpy(addr.sun_path, path.data(), path.size());
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd)
        return fail_errno();
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
        return fail_errno();
    return Client(std::move(fd));
}

Result<void> Client::send(std::string_view method, const Json& parameters, bool more) {
    const std::string message = encode_call(method, parameters, more);
    std::size_t off = 0;
    while (off < message.size()) {
        const ssize_t n =
            ::send(fd_.get(), message.data() + off, message.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail_errno();
        }
        off += static_cast<std::size_t>(n);
    }
    return {};
}

Result<Reply> Client::receive() {
    for (;;) {
        auto message = framer_.next();
        if (!message)
            return fail(message.error());
        if (*message)
            return parse_reply(**message);
        char buf[65536];
        const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
        if (n == 0)
            return fail(Errc::Closed);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail_errno();
        }
        if (framer_.buffered() + static_cast<std::size_t>(n) > kMaxReply)
            return fail(Errc::TooLarge); // never grow past the bound, whatever the server sends
        framer_.append(std::span<const char>(buf, static_cast<std::size_t>(n)));
    }
}

Result<Reply> Client::call(std::string_view method, const Json& parameters) {
    if (auto r = send(method, parameters); !r)
        return fail(r.error());
    return receive();
}

} // namespace nsidd::varlink
