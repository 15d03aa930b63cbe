// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "daemon/http_exporter.hpp"
#include "daemon/netlink_kernel.hpp"
#include "daemon/server.hpp"
#include "mirror/engine.hpp"

namespace nsidd::daemon {

using mirror::PeerState;
using mirror::ResyncReason;

/// nsidd's Prometheus metrics (prometheus-cpp). Every series exists from the start; the event
/// path only bumps pre-built handles (no allocation, no syscall). Served by the pull exposer on
/// --metrics-listen and by the Varlink GetMetrics method.
class Metrics {
public:
    /// `methods`: the Varlink method names that get their own request series.
    explicit Metrics(std::vector<std::string_view> methods);

    /// Serves the metrics over HTTP on "ADDR:PORT" or "[ADDR]:PORT", on `event`'s loop. Logs
    /// why it could not and fails with the reason (EADDRINUSE: the port is taken).
    Result<void> listen(sd_event* event, const std::string& address);

    /// What the metrics are read from.
    struct Sources {
        const mirror::Engine& engine;
        const EventStats& events;
        const Server* server;
        std::uint64_t denials;
        std::uint64_t read_pauses; ///< storm pauses of the event socket (StormGate)
    };
    /// Brings every counter and gauge up to date.
    void sync(const Sources& from);
    /// Records one batch of `events` nsid events.
    void observe_batch(std::size_t events) { batch_size_.Observe(static_cast<double>(events)); }
    /// Records one resync's duration.
    void observe_resync(std::uint64_t usec) { resync_seconds_.Observe(usec / 1e6); }
    /// Counts one Varlink request by method (known methods only, else "other") and result.
    void count_request(std::string_view method, bool ok);
    /// Namespace count and the kernel's limit, read at resync time (they cost a /proc scan).
    void set_namespaces(std::size_t count, std::optional<std::uint64_t> limit);

    /// The text exposition of every metric.
    std::string text() const;

private:
    void add_labelled();

    std::vector<std::string_view> methods_;
    std::uint64_t states_usec_ = 0; // when peers by state were last counted
    // Increments a counter to `value` (counters only go up; our totals are monotonic).
    static void advance(prometheus::Counter& c, std::uint64_t value);

    std::shared_ptr<prometheus::Registry> registry_;
    std::unique_ptr<HttpExporter> exporter_;
    prometheus::Gauge& tables_;
    prometheus::Gauge& entries_;
    prometheus::Gauge& dangling_;
    std::array<prometheus::Gauge*, static_cast<std::size_t>(PeerState::Count)> peers_{};
    // Age of the oldest peer in each leaking state (stale-mount, fd-held, pinned); 0: none.
    std::array<prometheus::Gauge*, static_cast<std::size_t>(PeerState::Count)> leak_oldest_{};
    std::array<prometheus::Gauge*, static_cast<std::size_t>(PeerState::Count)> leaking_{};
    prometheus::Counter& events_new_;
    prometheus::Counter& events_del_;
    prometheus::Counter& events_foreign_;
    prometheus::Counter& batches_;
    prometheus::Counter& sweeps_;
    prometheus::Histogram& batch_size_;
    prometheus::Counter& purged_peers_;
    prometheus::Counter& purged_entries_;
    prometheus::Counter& overruns_;
    prometheus::Counter& malformed_;
    prometheus::Counter& read_pauses_;
    std::array<prometheus::Counter*, static_cast<std::size_t>(ResyncReason::Count)> resyncs_{};
    prometheus::Counter& resync_failures_;
    prometheus::Histogram& resync_seconds_;
    prometheus::Gauge& last_resync_;
    prometheus::Gauge& connections_;
    prometheus::Gauge& watchers_;
    prometheus::Counter& refused_;
    prometheus::Counter& denials_;
    prometheus::Counter& dropped_watchers_;
    prometheus::Gauge& netns_count_;
    prometheus::Gauge& netns_limit_;
    prometheus::Family<prometheus::Counter>& requests_;
};

} // namespace nsidd::daemon
