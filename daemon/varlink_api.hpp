// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/server.hpp"
#include "mirror/engine.hpp"
#include "varlink/protocol.hpp"

namespace nsidd::daemon {

/// The Varlink API: org.varlink.service and io.nsidd.Registry as a table of methods, each a row
/// (name, parameters, privileged, streaming) and a handler. The table checks what every method
/// shares (unknown parameters, uid 0, `more`); a handler does only its own work.
class VarlinkApi {
public:
    /// What the handlers need beyond a const view of the engine.
    struct Hooks {
        std::function<varlink::Json()> status;
        std::function<void()> resync;
        /// Re-reads the configuration; the error text on failure.
        std::function<std::optional<std::string>()> reload;
        /// The keys the last reload changed that apply only after a restart.
        std::function<std::vector<std::string>()> restart_needed;
        std::function<std::string()> metrics_text;
        /// Self's id for a /run/netns name (asks the kernel).
        std::function<std::optional<registry::Nsid>(const std::string&)> nsid_of_name;
        /// A method was called; `ok`: answered without an error.
        std::function<void(std::string_view method, bool ok)> counted;
        /// Settles the engine and sends what its feed holds to the watchers, so that an
        /// answer reflects exactly the changes up to the seq it names.
        std::function<void()> settle;
    };

    /// The changes and their seqs are the engine's feed.
    VarlinkApi(const mirror::Engine& engine, Hooks hooks);

    /// Answers one call (the server's dispatch function).
    void call(Server::Client& client, const varlink::Call& call);

    std::uint64_t denials() const noexcept { return denials_; }
    /// Every method's name (for metrics labels).
    static std::vector<std::string_view> method_names();

private:
    struct Method;
    static std::span<const Method> methods();
    bool allowed(Server::Client& client, const Method& m, const varlink::Call& call);

    void get_info(Server::Client& client, const varlink::Call& call);
    void get_interface_description(Server::Client& client, const varlink::Call& call);
    void get_status(Server::Client& client, const varlink::Call& call);
    void list(Server::Client& client, const varlink::Call& call);
    void graph(Server::Client& client, const varlink::Call& call);
    void history(Server::Client& client, const varlink::Call& call);
    void list_without_nsid(Server::Client& client, const varlink::Call& call);
    void watch(Server::Client& client, const varlink::Call& call);
    void resync(Server::Client& client, const varlink::Call& call);
    void reload(Server::Client& client, const varlink::Call& call);
    void get_metrics(Server::Client& client, const varlink::Call& call);

    varlink::Json entries(registry::Observer observer, const registry::Registry::Table& t) const;

    const mirror::Engine& engine_;
    Hooks hooks_;
    std::uint64_t denials_ = 0;
};

/// Drains the feed: each change not sent yet goes to every Watch client of `server` (none before
/// it starts: null), in order; `seen`, if given, is called with each too.
void send_changes(mirror::Feed& feed, Server* server,
                  const std::function<void(const mirror::Feed::Item&)>& seen = {});

} // namespace nsidd::daemon
