// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/http_exporter.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace nsidd::daemon {
namespace {

// Out of file descriptors: accepting resumes after this.
constexpr std::uint64_t kResumeUsec = 250'000;
// After the answer, the client has this long to close its side.
constexpr std::uint64_t kLingerUsec = 2'000'000;
// What a client may still send after its answer before it is cut off.
constexpr std::size_t kMaxDrain = 64 << 10;

} // namespace

Result<std::unique_ptr<HttpExporter>> HttpExporter::start(sd_event* event,
                                                          const ListenAddress& where,
                                                          std::function<std::string()> text) {
    UniqueFd fd(::socket(where.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd)
        return fail_errno();
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (where.addr.ss_family == AF_INET6)
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&where.addr), where.len) < 0 ||
        ::listen(fd.get(), 16) < 0)
        return fail_errno();
    std::unique_ptr<HttpExporter> self(new HttpExporter(event, std::move(fd), std::move(text)));
    sd_event_source* s = nullptr;
    if (const int r =
            sd_event_add_io(event, &s, self->listener_.get(), EPOLLIN, on_accept, self.get());
        r < 0)
        return fail_errno(-r);
    self->accept_.reset(s);
    return self;
}

HttpExporter::HttpExporter(sd_event* event, UniqueFd listener, std::function<std::string()> text)
    : event_(event), listener_(std::move(listener)), text_(std::move(text)) {}

HttpExporter::~HttpExporter() = default;

int HttpExporter::on_accept(sd_event_source*, int, uint32_t, void* userdata) noexcept {
    static_cast<HttpExporter*>(userdata)->accept_all();
    return 0;
}

int HttpExporter::on_resume(sd_event_source*, uint64_t, void* userdata) noexcept {
    auto* self = static_cast<HttpExporter*>(userdata);
    self->resume_.reset();
    sd_event_source_set_enabled(self->accept_.get(), SD_EVENT_ON);
    return 0;
}

void HttpExporter::accept_all() {
    for (;;) {
        UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd) {
            const int error = errno; // the calls below may change errno
            if (error == EMFILE || error == ENFILE) {
                // The listener stays readable: pause it rather than spin.
                sd_event_source* s = nullptr;
                sd_event_source_set_enabled(accept_.get(), SD_EVENT_OFF);
                if (sd_event_add_time_relative(event_, &s, CLOCK_MONOTONIC, kResumeUsec, 0,
                                               on_resume, this) >= 0)
                    resume_.reset(s);
                else
                    sd_event_source_set_enabled(accept_.get(), SD_EVENT_ON);
            } else if (error != EAGAIN && error != EINTR && error != ECONNABORTED) {
                spdlog::warn("Metrics listener: accept failed: {}", std::strerror(error));
            }
            if (error != EINTR && error != ECONNABORTED)
                return;
            continue;
        }
        if (conns_.size() >= kMaxConnections && !evict_idle())
            continue; // closed at once: every connection is being answered
        add(std::move(fd));
    }
}

bool HttpExporter::evict_idle() {
    for (auto& c : conns_) // oldest first
        if (c->out.empty()) {
            close(*c);
            return true;
        }
    return false;
}

void HttpExporter::add(UniqueFd fd) {
    auto c = std::make_unique<Connection>();
    c->owner = this;
    c->fd = std::move(fd);
    sd_event_source* io = nullptr;
    sd_event_source* deadline = nullptr;
    if (sd_event_add_io(event_, &io, c->fd.get(), EPOLLIN, on_io, c.get()) < 0)
        return;
    c->io.reset(io);
    if (sd_event_add_time_relative(event_, &deadline, CLOCK_MONOTONIC, kRequestDeadlineUsec, 0,
                                   on_deadline, c.get()) < 0)
        return;
    c->deadline.reset(deadline);
    conns_.push_back(std::move(c));
    auto& added = *conns_.back();
    added.self = std::prev(conns_.end());
    if (!read_request(added))
        close(added);
}

int HttpExporter::on_deadline(sd_event_source*, uint64_t, void* userdata) noexcept {
    auto* c = static_cast<Connection*>(userdata);
    c->owner->close(*c);
    return 0;
}

int HttpExporter::on_io(sd_event_source*, int, uint32_t revents, void* userdata) noexcept {
    auto* c = static_cast<Connection*>(userdata);
    HttpExporter& self = *c->owner;
    bool open = true;
    if (c->lingering)
        open = self.drain(*c);
    else if (c->out.empty())
        open = self.read_request(*c);
    else if (revents & (EPOLLOUT | EPOLLERR | EPOLLHUP))
        open = self.flush(*c);
    if (!open)
        self.close(*c);
    return 0;
}

bool HttpExporter::read_request(Connection& c) {
    char buf[4096];
    for (;;) {
        const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR;
        if (n == 0)
            return false; // gone before its request was whole: nothing to answer
        if (c.request.feed(std::string_view(buf, static_cast<std::size_t>(n))) !=
            HttpRequest::State::More)
            break;
    }
    c.out = http_response(c.request, text_);
    sd_event_source_set_time_relative(c.deadline.get(), kDeadlineUsec);
    return flush(c);
}

bool HttpExporter::flush(Connection& c) {
    while (c.sent < c.out.size()) {
        const ssize_t n = ::send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return false;
            sd_event_source_set_io_events(c.io.get(), EPOLLOUT);
            return true;
        }
        c.sent += static_cast<std::size_t>(n);
    }
    ::shutdown(c.fd.get(), SHUT_WR);
    c.lingering = true;
    c.out = std::string();
    sd_event_source_set_io_events(c.io.get(), EPOLLIN);
    std::uint64_t now = 0;
    if (sd_event_now(event_, CLOCK_MONOTONIC, &now) >= 0) {
        std::uint64_t at = 0;
        sd_event_source_get_time(c.deadline.get(), &at);
        sd_event_source_set_time(c.deadline.get(), std::min(at, now + kLingerUsec));
    }
    return drain(c);
}

bool HttpExporter::drain(Connection& c) {
    char buf[4096];
    for (;;) {
        const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0)
            return n < 0 && (errno == EAGAIN || errno == EINTR);
        // A client that keeps sending after its answer is not reading it: done with.
        c.drained += static_cast<std::size_t>(n);
        if (c.drained > kMaxDrain)
            return false;
    }
}

void HttpExporter::close(Connection& c) {
    conns_.erase(c.self); // its sources and fd with it
}

} // namespace nsidd::daemon
