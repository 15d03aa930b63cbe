// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <string>

#include <systemd/sd-event.h>

#include "daemon/http_request.hpp"
#include "daemon/options.hpp"
#include "daemon/server.hpp"
#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace nsidd::daemon {

/// The Prometheus endpoint: GET /metrics (and /) over HTTP/1.1 on nsidd's own event loop, IPv4
/// and IPv6. One request per connection (each answer says "Connection: close"). Bounded against
/// slow and hostile scrapers: a few connections at once, a request of a few KiB, a deadline per
/// connection. Requests are parsed by http-parser (HttpRequest); no TLS library is loaded.
class HttpExporter {
public:
    /// Connections served at once. When all are taken, a new one evicts the oldest that is
    /// not being answered (still waiting for its request, or done): idle connections cannot
    /// lock scrapers out.
    static constexpr std::size_t kMaxConnections = 8;
    /// A connection's time to send its whole request (headers included).
    static constexpr std::uint64_t kRequestDeadlineUsec = 2'000'000;
    /// Its time to read the answer, from the end of its request.
    static constexpr std::uint64_t kDeadlineUsec = 10'000'000;

    /// Binds `where` and serves what `text()` returns (called on the loop, once per scrape).
    /// Fails with the bind's errno (EADDRINUSE: the port is taken).
    static Result<std::unique_ptr<HttpExporter>> start(sd_event* event, const ListenAddress& where,
                                                       std::function<std::string()> text);
    ~HttpExporter();
    HttpExporter(const HttpExporter&) = delete;
    HttpExporter& operator=(const HttpExporter&) = delete;

private:
    struct Connection {
        HttpExporter* owner = nullptr;
        UniqueFd fd;
        EventSource io;
        EventSource deadline;
        HttpRequest request;
        std::string out;      // the answer, once the request is read
        std::size_t sent = 0; // of out
        bool lingering = false;
        std::size_t drained = 0; // bytes read and dropped while lingering
        std::list<std::unique_ptr<Connection>>::iterator self;
    };

    HttpExporter(sd_event* event, UniqueFd listener, std::function<std::string()> text);
    static int on_accept(sd_event_source*, int, uint32_t, void* userdata) noexcept;
    static int on_resume(sd_event_source*, uint64_t, void* userdata) noexcept;
    static int on_io(sd_event_source*, int, uint32_t revents, void* userdata) noexcept;
    static int on_deadline(sd_event_source*, uint64_t, void* userdata) noexcept;
    void accept_all();
    // Makes room for one more connection: closes the oldest one not being answered. False
    // when every connection is being answered.
    bool evict_idle();
    // A new connection: watched, its request deadline set, and read at once (a scraper's
    // request usually arrives with it).
    void add(UniqueFd fd);
    // Reads the request; false: the connection is done with.
    bool read_request(Connection& c);
    // Sends what is left of the answer; false: the connection is done with.
    bool flush(Connection& c);
    // After the answer: reads and discards until the client closes (closing with unread input
    // would reset the connection and could lose the answer on its way).
    bool drain(Connection& c);
    void close(Connection& c);

    sd_event* event_;
    UniqueFd listener_;
    std::function<std::string()> text_;
    EventSource accept_;
    EventSource resume_; // out of fds: accepting waits for this timer
    std::list<std::unique_ptr<Connection>> conns_;
};

} // namespace nsidd::daemon
