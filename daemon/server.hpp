// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>

#include <systemd/sd-event.h>

#include "util/result.hpp"
#include "util/unique_fd.hpp"
#include "varlink/connection.hpp"
#include "varlink/protocol.hpp"

namespace nsidd::daemon {

using EventSource = std::unique_ptr<sd_event_source, FnDeleter<sd_event_source_disable_unref>>;

/// Creates, binds and listens on a Unix stream socket at `path` (mode 0660, group `nsidd` when
/// that group exists). Replaces only a stale socket: fails with EEXIST when something other
/// than a socket is there, and with EADDRINUSE when something answers on it.
Result<UniqueFd> listen_unix(const std::string& path);

/// The Varlink listener and its connections on sd-event. Framing, limits and output buffering
/// live here; what a call means is the dispatcher's business.
class Server {
public:
    /// Set from the options (their defaults are nsidd's; docs in nsidd(8)).
    struct Limits {
        std::size_t max_connections = 0;
        std::size_t max_per_uid = 0;
        varlink::ConnectionLimits connection;
        std::uint64_t idle_usec = 0;      ///< a half-sent request older than this is dropped
        std::size_t max_total_output = 0; ///< unsent bytes of all clients together
    };

    /// One connected client, as the dispatcher sees it.
    class Client {
    public:
        uid_t uid() const noexcept { return conn_.uid(); }
        /// Sends a reply to the current call (unless it was oneway).
        void reply(const varlink::Json& parameters, bool continues = false);
        /// Sends an error reply to the current call.
        void error(std::string_view name,
                   const varlink::Json& parameters = varlink::Json::object());
        /// Keeps the connection as a stream subscriber after this call ("more"): it receives
        /// publish()ed messages until it disconnects or falls behind.
        void subscribe() { subscribed_ = true; }
        bool subscribed() const noexcept { return subscribed_; }
        /// The current call was answered with an error.
        bool failed() const noexcept { return failed_; }

    private:
        friend class Server;
        Client(Server& server, UniqueFd fd, const varlink::ConnectionLimits& limits)
            : server_(server), conn_(std::move(fd), limits) {}
        Server& server_;
        varlink::Connection conn_;
        EventSource io_;
        bool oneway_ = false;
        bool subscribed_ = false;
        bool failed_ = false;
        bool closing_ = false;            // close once the output is flushed
        std::uint64_t closing_since_ = 0; // when a sweep first saw it closing
        std::uint64_t partial_since_ = 0;
        std::uint64_t active_usec_ = 0; // last request or reply (CLOCK_MONOTONIC)
        std::list<std::unique_ptr<Client>>::iterator self_;
    };

    using Dispatch = std::function<void(Client&, const varlink::Call&)>;

    Server(sd_event* event, UniqueFd listener, Limits limits, Dispatch dispatch);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    /// Starts accepting.
    Result<void> start();
    /// Called with the size of a large output buffer freed once sent (memory that may be
    /// worth returning to the system).
    void on_released(std::function<void(std::size_t)> fn) { released_ = std::move(fn); }

    /// Sends `make()`'s message to every subscriber (built only if there is one). A subscriber
    /// whose unsent output would pass its cap is sent `too_slow` and disconnected.
    void publish(const std::function<std::string()>& make, std::string_view too_slow);

    struct Stats {
        std::uint64_t accepted = 0;
        std::uint64_t refused = 0; ///< over the connection limits
        std::uint64_t requests = 0;
        std::uint64_t bad_requests = 0; ///< answered with a protocol error or closed
        std::uint64_t dropped_subscribers = 0;
        std::uint64_t out_of_fds = 0;  ///< accepts that met EMFILE/ENFILE
        std::uint64_t evicted = 0;     ///< idle connections closed to make room for new ones
        std::uint64_t idle_closed = 0; ///< connections closed after --idle-timeout idle
        std::uint64_t shed = 0;        ///< clients dropped to keep all output under its bound
    };
    const Stats& stats() const noexcept { return stats_; }
    std::size_t connections() const noexcept { return clients_.size(); }
    std::size_t subscribers() const noexcept;

private:
    static int on_accept(sd_event_source*, int fd, uint32_t revents, void* userdata) noexcept;
    static int on_io(sd_event_source*, int fd, uint32_t revents, void* userdata) noexcept;
    static int on_sweep(sd_event_source*, uint64_t usec, void* userdata) noexcept;
    static int on_accept_retry(sd_event_source*, uint64_t usec, void* userdata) noexcept;
    void accept_all();
    // Out of file descriptors: closes the longest-idle connection (true), or pauses accepting
    // until a connection closes or a short timer fires (false). Logs at most once per period.
    bool make_room(int error);
    void resume_accepting();
    void handle_io(Client& client, uint32_t revents);
    void process(Client& client);
    void queue(Client& client, std::string message);
    void update_events(Client& client);
    // Writes what the socket takes and reports a large buffer freed.
    Result<void> flush(Client& client);
    // All clients' unsent output passed its bound: drops the largest until it fits.
    void shed_output();
    void drop(Client& client);

    sd_event* event_;
    UniqueFd listener_;
    Limits limits_;
    Dispatch dispatch_;
    std::function<void(std::size_t)> released_;
    EventSource accept_source_;
    EventSource sweep_source_;
    EventSource accept_retry_;
    bool accept_paused_ = false;
    std::size_t queued_ = 0; // unsent output of all clients, recounted when it passes the bound
    std::uint64_t out_of_fds_logged_usec_ = 0;
    std::uint64_t out_of_fds_logged_ = 0;
    std::list<std::unique_ptr<Client>> clients_;
    std::map<uid_t, std::size_t> per_uid_;
    Stats stats_;
};

} // namespace nsidd::daemon
