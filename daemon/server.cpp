// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/server.hpp"

#include <cerrno>
#include <cstring>

#include <grp.h>
#include <sys/epoll.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "util/time.hpp"

namespace nsidd::daemon {
namespace {

constexpr std::uint64_t kSweepUsec = 5'000'000;
// Out of file descriptors with nothing idle to close: accepting resumes after this, or as soon
// as a connection closes.
constexpr std::uint64_t kAcceptRetryUsec = 250'000;
constexpr std::uint64_t kOutOfFdsLogUsec = 60'000'000;
// A client's further requests wait while this much of its output is unsent (backpressure: a
// client that does not read cannot make nsidd buffer replies for it without bound).
constexpr std::size_t kBackpressureBytes = 256 << 10;

} // namespace

Result<UniqueFd> listen_unix(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
        return fail_errno(ENAMETOOLONG);
    std::memcpy(addr.sun_path, path.data(), path.size());
    // The parent directory (e.g. /run/nsidd) may not exist without systemd's RuntimeDirectory=.
    if (const auto slash = path.rfind('/'); slash != std::string::npos && slash > 0) {
        const std::string dir = path.substr(0, slash);
        if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST)
            return fail_errno();
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd)
        return fail_errno();
    // Replace only a stale socket: never another file, never one that someone serves.
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return fail_errno(EEXIST);
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!probe)
            return fail_errno();
        if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ||
            errno == EAGAIN || errno == EINPROGRESS)
            return fail_errno(EADDRINUSE);
        if (errno != ECONNREFUSED && errno != ENOENT)
            return fail_errno();
        ::unlink(path.c_str()); // stale: nobody listens there
    }
    // The file bind() makes takes its mode from the socket's own inode (less the umask) and its
    // group from the file-system gid: both are set on the fd and the process before bind, so
    // nothing is done to the path afterwards (a chown there would follow a link planted in
    // between).
    if (::fchmod(fd.get(), 0660) < 0)
        return fail_errno();
    const group* g = ::getgrnam("nsidd");
    const auto fsgid = ::setfsgid(static_cast<gid_t>(-1));
    if (g != nullptr) {
        ::setfsgid(g->gr_gid);
        if (::setfsgid(static_cast<gid_t>(-1)) != static_cast<int>(g->gr_gid))
            return fail_errno(EPERM); // neither CAP_SETGID nor a member of the group
    }
    const mode_t old = ::umask(0117);
    const int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    const int error = errno;
    ::umask(old);
    ::setfsgid(static_cast<gid_t>(fsgid));
    if (rc < 0)
        return fail_errno(error);
    if (::listen(fd.get(), SOMAXCONN) < 0)
        return fail_errno();
    return fd;
}

void Server::Client::reply(const varlink::Json& parameters, bool continues) {
    if (!oneway_)
        server_.queue(*this, varlink::encode_reply(parameters, continues));
}

void Server::Client::error(std::string_view name, const varlink::Json& parameters) {
    failed_ = true;
    if (!oneway_)
        server_.queue(*this, varlink::encode_error(name, parameters));
}

Server::Server(sd_event* event, UniqueFd listener, Limits limits, Dispatch dispatch)
    : event_(event), listener_(std::move(listener)), limits_(limits),
      dispatch_(std::move(dispatch)) {}

Server::~Server() = default;

Result<void> Server::flush(Client& client) {
    auto r = client.conn_.flush();
    if (const auto freed = client.conn_.take_released(); freed > 0 && released_)
        released_(freed);
    return r;
}

Result<void> Server::start() {
    sd_event_source* s = nullptr;
    int r = sd_event_add_io(event_, &s, listener_.get(), EPOLLIN, on_accept, this);
    if (r < 0)
        return fail_errno(-r);
    accept_source_.reset(s);
    r = sd_event_add_time_relative(event_, &s, CLOCK_MONOTONIC, kSweepUsec, 0, on_sweep, this);
    if (r < 0)
        return fail_errno(-r);
    sweep_source_.reset(s);
    sd_event_source_set_enabled(s, SD_EVENT_ON);
    return {};
}

std::size_t Server::subscribers() const noexcept {
    std::size_t n = 0;
    for (const auto& p : clients_)
        n += p->subscribed_ && !p->closing_;
    return n;
}

int Server::on_accept(sd_event_source*, int, uint32_t, void* userdata) noexcept {
    static_cast<Server*>(userdata)->accept_all();
    return 0;
}

void Server::accept_all() {
    for (;;) {
        UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && make_room(errno))
                continue;
            if (errno != EAGAIN && errno != EMFILE && errno != ENFILE)
                spdlog::warn("Failed to accept Varlink connection: {}", std::strerror(errno));
            return;
        }
        auto client = std::unique_ptr<Client>(new Client(*this, std::move(fd), limits_.connection));
        const uid_t uid = client->uid();
        if (clients_.size() >= limits_.max_connections || per_uid_[uid] >= limits_.max_per_uid) {
            ++stats_.refused;
            // Rate-limited: a flood of refusals must not flood the journal.
            if ((stats_.refused & (stats_.refused - 1)) == 0)
                spdlog::warn("Refused Varlink connection from uid {}: connection limit reached "
                             "({} refused so far)",
                             uid, stats_.refused);
            continue;
        }
        sd_event_source* s = nullptr;
        if (sd_event_add_io(event_, &s, client->conn_.fd(), EPOLLIN, on_io, client.get()) < 0)
            continue;
        client->io_.reset(s);
        client->active_usec_ = monotonic_usec();
        ++stats_.accepted;
        ++per_uid_[uid];
        clients_.push_back(std::move(client));
        clients_.back()->self_ = std::prev(clients_.end());
    }
}

int Server::on_io(sd_event_source*, int, uint32_t revents, void* userdata) noexcept {
    auto* client = static_cast<Client*>(userdata);
    client->server_.handle_io(*client, revents);
    return 0;
}

bool Server::make_room(int error) {
    ++stats_.out_of_fds;
    // The longest-idle connection (no request in flight, not watching, nothing to send) goes.
    Client* idle = nullptr;
    for (const auto& p : clients_)
        if (!p->subscribed_ && !p->closing_ && p->conn_.buffered_input() == 0 &&
            p->conn_.pending_output() == 0 && (!idle || p->active_usec_ < idle->active_usec_))
            idle = p.get();
    const auto now = monotonic_usec();
    if (now - out_of_fds_logged_usec_ >= kOutOfFdsLogUsec) {
        spdlog::warn("Out of file descriptors accepting Varlink connections ({}): {} times, {} "
                     "idle connections closed to make room so far",
                     std::strerror(error), stats_.out_of_fds - out_of_fds_logged_,
                     stats_.evicted + (idle != nullptr));
        out_of_fds_logged_usec_ = now;
        out_of_fds_logged_ = stats_.out_of_fds;
    }
    if (idle != nullptr) {
        ++stats_.evicted;
        drop(*idle);
        return true;
    }
    // Nothing to close: stop polling the listener (it stays readable, and would spin).
    accept_paused_ = true;
    sd_event_source_set_enabled(accept_source_.get(), SD_EVENT_OFF);
    sd_event_source* s = nullptr;
    if (accept_retry_) {
        sd_event_source_set_time_relative(accept_retry_.get(), kAcceptRetryUsec);
        sd_event_source_set_enabled(accept_retry_.get(), SD_EVENT_ONESHOT);
    } else if (sd_event_add_time_relative(event_, &s, CLOCK_MONOTONIC, kAcceptRetryUsec, 0,
                                          on_accept_retry, this) >= 0) {
        accept_retry_.reset(s);
    }
    return false;
}

int Server::on_accept_retry(sd_event_source*, uint64_t, void* userdata) noexcept {
    static_cast<Server*>(userdata)->resume_accepting();
    return 0;
}

void Server::resume_accepting() {
    if (!accept_paused_)
        return;
    accept_paused_ = false;
    sd_event_source_set_enabled(accept_source_.get(), SD_EVENT_ON);
}

void Server::handle_io(Client& client, uint32_t revents) {
    client.active_usec_ = monotonic_usec();
    if (revents & EPOLLIN) {
        auto r = client.conn_.receive();
        if (!r) {
            drop(client);
            return;
        }
        process(client);
    } else if (revents & (EPOLLHUP | EPOLLERR)) {
        drop(client);
        return;
    }
    if (auto r = flush(client); !r) {
        drop(client);
        return;
    }
    // Room again: the requests that waited for it are served.
    if (!(revents & EPOLLIN) && client.conn_.buffered_input() > 0 &&
        client.conn_.pending_output() <= kBackpressureBytes) {
        process(client);
        if (auto r = flush(client); !r) {
            drop(client);
            return;
        }
    }
    if (client.closing_ && client.conn_.pending_output() == 0) {
        drop(client);
        return;
    }
    update_events(client);
}

void Server::process(Client& client) {
    // A subscriber's connection is busy with its stream: later calls wait (Varlink "more").
    // So do the calls of a client that does not read its replies.
    while (!client.closing_ && !client.subscribed_ &&
           client.conn_.pending_output() <= kBackpressureBytes) {
        auto message = client.conn_.next_message();
        if (!message) {
            ++stats_.bad_requests;
            client.oneway_ = false;
            client.error(varlink::kInvalidParameter, {{"parameter", ""}});
            client.closing_ = true;
            break;
        }
        if (!*message)
            break;
        ++stats_.requests;
        auto call = varlink::parse_call(**message);
        if (!call) {
            ++stats_.bad_requests;
            client.oneway_ = false;
            client.error(call.error().error, call.error().parameters);
            client.closing_ = call.error().fatal;
            continue;
        }
        client.oneway_ = call->oneway;
        client.failed_ = false;
        dispatch_(client, *call);
    }
    client.partial_since_ = client.conn_.buffered_input() > 0
                                ? (client.partial_since_ ? client.partial_since_ : monotonic_usec())
                                : 0;
}

void Server::queue(Client& client, std::string message) {
    if (client.closing_)
        return;
    const auto size = message.size();
    if (auto r = client.conn_.queue(std::move(message)); !r) {
        // Unread output past the cap: drop this client rather than grow without bound.
        client.closing_ = true;
        return;
    }
    queued_ += size;
    if (queued_ > limits_.max_total_output)
        shed_output();
}

void Server::shed_output() {
    // What is really unsent now (the running count only grows between recounts).
    std::size_t total = 0;
    for (const auto& p : clients_)
        total += p->conn_.pending_output();
    // Past the global bound, the clients with the most unsent output go first.
    while (total > limits_.max_total_output) {
        Client* most = nullptr;
        for (const auto& p : clients_)
            if (!p->closing_ && (!most || p->conn_.pending_output() > most->conn_.pending_output()))
                most = p.get();
        if (most == nullptr || most->conn_.pending_output() == 0)
            break;
        total -= most->conn_.pending_output();
        ++stats_.shed;
        most->closing_ = true;
        most->conn_.replace_output({}); // freed now; the connection closes at its next event
        update_events(*most);
    }
    queued_ = total;
}

void Server::update_events(Client& client) {
    uint32_t events = client.closing_ || client.conn_.pending_output() > kBackpressureBytes
                          ? 0u
                          : static_cast<uint32_t>(EPOLLIN);
    if (client.conn_.pending_output() > 0)
        events |= EPOLLOUT;
    sd_event_source_set_io_events(client.io_.get(), events);
}

void Server::publish(const std::function<std::string()>& make, std::string_view too_slow) {
    std::string message;
    for (auto it = clients_.begin(); it != clients_.end();) {
        Client& client = **it++;
        if (!client.subscribed_ || client.closing_)
            continue;
        if (message.empty())
            message = make();
        if (client.conn_.pending_output() > 0 &&
            client.conn_.pending_output() + message.size() > limits_.connection.max_output) {
            ++stats_.dropped_subscribers;
            // The error replaces the backlog, so that the client reads it next and not after
            // megabytes it is too slow for; it is the last thing sent.
            client.closing_ = true;
            client.conn_.replace_output(varlink::encode_error(too_slow));
            // Rate-limited: a flood of slow watchers must not flood the journal.
            if ((stats_.dropped_subscribers & (stats_.dropped_subscribers - 1)) == 0)
                spdlog::warn("Dropped a Watch client of uid {} that did not read its stream "
                             "({} dropped so far)",
                             client.uid(), stats_.dropped_subscribers);
        } else {
            (void)client.conn_.queue(message);
        }
        if (auto r = flush(client); !r) {
            drop(client);
            continue;
        }
        if (client.closing_ && client.conn_.pending_output() == 0) {
            drop(client);
            continue;
        }
        update_events(client);
    }
}

int Server::on_sweep(sd_event_source* source, uint64_t, void* userdata) noexcept {
    auto* self = static_cast<Server*>(userdata);
    const auto now = monotonic_usec();
    for (auto it = self->clients_.begin(); it != self->clients_.end();) {
        Client& client = **it++;
        // A request that stays half-sent holds memory: drop the client. So does one that sends
        // nothing at all (an fd is a scarce resource too), unless it watches.
        const bool stale_partial =
            client.partial_since_ != 0 && now - client.partial_since_ > self->limits_.idle_usec;
        const bool idle = !client.subscribed_ && !client.closing_ &&
                          client.conn_.pending_output() == 0 &&
                          now - client.active_usec_ > self->limits_.idle_usec;
        if (idle) {
            ++self->stats_.idle_closed;
            self->drop(client);
            continue;
        }
        // A closing client (its output is bounded: at most a last error after a finished
        // message) gets the idle timeout to read what is left, then is given up on.
        if (client.closing_ && client.closing_since_ == 0)
            client.closing_since_ = now;
        const bool stale_closing =
            client.closing_ && now - client.closing_since_ > self->limits_.idle_usec;
        if (stale_partial || stale_closing)
            self->drop(client);
    }
    sd_event_source_set_time_relative(source, kSweepUsec);
    sd_event_source_set_enabled(source, SD_EVENT_ON);
    return 0;
}

void Server::drop(Client& client) {
    if (auto u = per_uid_.find(client.uid()); u != per_uid_.end() && --u->second == 0)
        per_uid_.erase(u);
    clients_.erase(client.self_);
    resume_accepting(); // an fd is free again
}

} // namespace nsidd::daemon
