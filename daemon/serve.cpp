// SPDX-License-Identifier: LGPL-2.1-or-later
// What the daemon serves over Varlink: the listener (passed by systemd or its own), the API's
// hooks into the daemon, and the status it reports.
#include <algorithm>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>

#include <spdlog/spdlog.h>

#include "daemon/daemon.hpp"
#include "util/time.hpp"
#include "version.hpp"

namespace nsidd::daemon {

Result<void> Daemon::start_server(std::optional<UniqueFd> varlink) {
    UniqueFd listener;
    passed_socket_ = varlink.has_value();
    if (varlink) {
        listener = std::move(*varlink);
        // Passed sockets may be blocking; accept4() runs until EAGAIN.
        const int flags = ::fcntl(listener.get(), F_GETFL);
        if (flags < 0 || ::fcntl(listener.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
            spdlog::error("Failed to make the passed socket non-blocking: {}",
                          std::strerror(errno));
            return fail_errno();
        }
    } else {
        auto fd = listen_unix(options_.socket);
        if (!fd) {
            const auto& ec = fd.error();
            const char* why = ec == std::errc::address_in_use ? " (another nsidd serves it)"
                              : ec == std::errc::file_exists  ? " (not a socket: left alone)"
                                                              : "";
            spdlog::error("Failed to listen on {}: {}{}", options_.socket, ec.message(), why);
            return fail(ec);
        }
        listener = std::move(*fd);
        struct stat st {};
        if (::lstat(options_.socket.c_str(), &st) == 0)
            socket_inode_ = st.st_ino;
    }
    api_ = std::make_unique<VarlinkApi>(*engine_, api_hooks());
    Server::Limits limits{options_.max_connections, options_.max_connections_per_uid,
                          varlink::ConnectionLimits{options_.max_request, options_.max_output},
                          std::uint64_t{options_.idle_timeout} * 1'000'000u,
                          options_.max_total_output};
    server_ = std::make_unique<Server>(
        event_.get(), std::move(listener), limits,
        [this](Server::Client& p, const varlink::Call& c) { api_->call(p, c); });
    // A large answer (List or Graph of ~1000 rows or more) was sent and its buffer freed: what
    // it and its document held goes back, once, now that none of it is in use.
    server_->on_released([this](std::size_t bytes) {
        if (bytes >= QuietWork::kTrimAfterBytes)
            quiet_.trim_now();
    });
    if (auto r = server_->start(); !r) {
        spdlog::error("Failed to accept Varlink connections: {}", r.error().message());
        return fail(r.error());
    }
    return {};
}

VarlinkApi::Hooks Daemon::api_hooks() {
    return {
        .status =
            [this] {
                settle();
                return status();
            },
        .resync = [this] { (void)events_->resync(ResyncReason::Manual); },
        .reload = [this] { return reload(); },
        .restart_needed = [this] { return restart_needed_; },
        .metrics_text =
            [this] {
                settle();
                sync_metrics();
                return metrics_.text();
            },
        .nsid_of_name = [this](const std::string& name) { return engine_->nsid_of_name(name); },
        .counted = [this](std::string_view method, bool ok) { metrics_.count_request(method, ok); },
        .settle =
            [this] {
                settle();
            }};
}

varlink::Json Daemon::status() const {
    const auto& reg = engine_->registry();
    const auto& st = engine_->stats();
    varlink::Json peers = varlink::Json::object();
    const auto counts = engine_->state_counts();
    for (const auto& n : kPeerStateNames)
        peers[n.wire] = counts[static_cast<std::size_t>(n.state)];
    return {{"version", kVersion},
            {"uptime_usec", monotonic_usec() - started_usec_},
            {"scope", options_.scope == Scope::Host ? "host" : "self"},
            {"tables", reg.tables().size()},
            {"entries", reg.entry_count()},
            {"events", reg.counters().events},
            {"batches", reg.counters().batches},
            {"overruns", kernel_->stats().overruns},
            {"resyncs", st.resyncs_total()},
            {"last_resync_usec", st.last_resync_usec},
            {"peers", std::move(peers)},
            {"dangling_names", engine_->catalog().dangling_names()},
            {"kernel",
             {{"dump_truncation", features_.dump_truncation},
              {"listen_all_nsid", kernel_->event_socket().listen_all()},
              {"ns_get_id", features_.ns_get_id},
              {"listmount", engine_->catalog().mounts_by_listmount()}}}};
}

} // namespace nsidd::daemon
