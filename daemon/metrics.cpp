// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/metrics.hpp"

#include <sstream>

#include <prometheus/text_serializer.h>

#include <spdlog/spdlog.h>

#include "util/time.hpp"
#include "version.hpp"

namespace nsidd::daemon {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

prometheus::Gauge& gauge(prometheus::Registry& r, const char* name, const char* help,
                         const prometheus::Labels& labels = {}) {
    return BuildGauge().Name(name).Help(help).Register(r).Add(labels);
}
prometheus::Counter& counter(prometheus::Registry& r, const char* name, const char* help,
                             const prometheus::Labels& labels = {}) {
    return BuildCounter().Name(name).Help(help).Register(r).Add(labels);
}
prometheus::Histogram& histogram(prometheus::Registry& r, const char* name, const char* help,
                                 prometheus::Histogram::BucketBoundaries buckets) {
    return BuildHistogram().Name(name).Help(help).Register(r).Add({}, std::move(buckets));
}

} // namespace

Metrics::Metrics(std::vector<std::string_view> methods)
    : methods_(std::move(methods)), registry_(std::make_shared<prometheus::Registry>()),
      tables_(gauge(*registry_, "nsidd_tables", "Peer-id tables mirrored")),
      entries_(gauge(*registry_, "nsidd_entries", "Entries in all mirrored tables")),
      dangling_(gauge(*registry_, "nsidd_dangling_names",
                      "Names under /run/netns that are no mount point (left behind)")),
      events_new_(counter(*registry_, "nsidd_nsid_events_total", "nsid events received",
                          {{"type", "new"}})),
      events_del_(counter(*registry_, "nsidd_nsid_events_total", "nsid events received",
                          {{"type", "del"}})),
      events_foreign_(counter(*registry_, "nsidd_foreign_events_total",
                              "nsid events from other namespaces' tables")),
      batches_(counter(*registry_, "nsidd_batches_total", "Event batches applied")),
      sweeps_(counter(*registry_, "nsidd_purge_sweeps_total",
                      "Purge sweeps run (at most one per batch or resync, whatever the deaths)")),
      batch_size_(histogram(*registry_, "nsidd_batch_size_events",
                            "nsid events per batch (one socket wakeup)",
                            {1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000})),
      purged_peers_(counter(*registry_, "nsidd_purged_peers_total", "Peers found dead")),
      purged_entries_(
          counter(*registry_, "nsidd_purged_entries_total", "Entries dropped by purge sweeps")),
      overruns_(counter(*registry_, "nsidd_overruns_total",
                        "Event socket overruns (ENOBUFS): events lost and resynced")),
      malformed_(counter(*registry_, "nsidd_malformed_datagrams_total",
                         "Event datagrams that failed to parse")),
      read_pauses_(
          counter(*registry_, "nsidd_event_read_pauses_total",
                  "Pauses of the event socket in storms (and probes for one), for events to "
                  "be read together")),
      resync_failures_(counter(*registry_, "nsidd_resync_failures_total", "Failed resyncs")),
      resync_seconds_(histogram(*registry_, "nsidd_resync_duration_seconds",
                                "Time to read the tables and reconcile",
                                {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10})),
      last_resync_(gauge(*registry_, "nsidd_last_resync_timestamp_seconds",
                         "Time of the last successful resync")),
      connections_(gauge(*registry_, "nsidd_varlink_connections", "Open Varlink connections")),
      watchers_(gauge(*registry_, "nsidd_varlink_watchers", "Open Watch streams")),
      refused_(
          counter(*registry_, "nsidd_varlink_refused_total", "Connections refused by the limits")),
      denials_(counter(*registry_, "nsidd_varlink_denials_total",
                       "Privileged calls denied to non-root clients")),
      dropped_watchers_(counter(*registry_, "nsidd_varlink_dropped_watchers_total",
                                "Watchers dropped for not reading")),
      netns_count_(gauge(*registry_, "nsidd_netns",
                         "Network namespaces reachable through nsfs mounts and /proc at the "
                         "last discovery pass")),
      netns_limit_(gauge(*registry_, "nsidd_netns_limit",
                         "The kernel's limit /proc/sys/user/max_net_namespaces")),
      requests_(BuildCounter()
                    .Name("nsidd_varlink_requests_total")
                    .Help("Varlink requests by method and result")
                    .Register(*registry_)) {
    add_labelled();
}

// The series with labels, each one up front (the request path then only looks handles up), and
// the constant ones.
void Metrics::add_labelled() {
    gauge(*registry_, "nsidd_build_info", "nsidd's version", {{"version", std::string(kVersion)}})
        .Set(1);
    gauge(*registry_, "nsidd_start_time_seconds", "Start time of nsidd since the epoch")
        .Set(static_cast<double>(realtime_usec()) / 1e6);
    auto& resyncs = BuildCounter()
                        .Name("nsidd_resyncs_total")
                        .Help("Full reads of the tables, by reason")
                        .Register(*registry_);
    for (std::size_t i = 0; i < resyncs_.size(); ++i)
        resyncs_[i] = &resyncs.Add({{"reason", to_string(static_cast<ResyncReason>(i))}});
    auto& peers = BuildGauge()
                      .Name("nsidd_peers")
                      .Help("Peers of self by what holds them (active, mounted, stale-mount, "
                            "fd-held, pinned, unknown)")
                      .Register(*registry_);
    auto& oldest = BuildGauge()
                       .Name("nsidd_leak_oldest_seconds")
                       .Help("How long the oldest namespace in a leaking state (with an id or "
                             "not) has leaked, 0 when there is none")
                       .Register(*registry_);
    auto& leaking = BuildGauge()
                        .Name("nsidd_leaking_namespaces")
                        .Help("Network namespaces in a leaking state (stale-mount, fd-held, "
                              "pinned), with an id in self's table or not")
                        .Register(*registry_);
    for (const auto& n : kPeerStateNames) {
        const auto i = static_cast<std::size_t>(n.state);
        peers_[i] = &peers.Add({{"state", n.name}});
        if (n.leak) {
            leak_oldest_[i] = &oldest.Add({{"state", n.name}});
            leaking_[i] = &leaking.Add({{"state", n.name}});
        }
    }
    for (auto m : methods_)
        for (const char* r : {"ok", "error"})
            requests_.Add({{"method", std::string(m)}, {"result", r}});
    for (const char* r : {"ok", "error"})
        requests_.Add({{"method", "other"}, {"result", r}});
}

Result<void> Metrics::listen(sd_event* event, const std::string& address) {
    const auto where = parse_listen_address(address);
    if (!where) {
        spdlog::error("Failed to listen for metrics on {}: not ADDR:PORT or [ADDR]:PORT", address);
        return fail(Errc::Malformed);
    }
    auto exporter = HttpExporter::start(event, *where, [this] { return text(); });
    if (!exporter) {
        const bool taken = exporter.error() == std::errc::address_in_use;
        spdlog::error("Failed to listen for metrics on {}: {}{}", address,
                      exporter.error().message(),
                      taken ? " (another process has the port; metrics-listen picks another, or "
                              "none)"
                            : "");
        return fail(exporter.error());
    }
    exporter_ = std::move(*exporter);
    return {};
}

void Metrics::advance(prometheus::Counter& c, std::uint64_t value) {
    const double now = c.Value();
    if (static_cast<double>(value) > now)
        c.Increment(static_cast<double>(value) - now);
}

void Metrics::sync(const Sources& from) {
    const auto& reg = from.engine.registry();
    const auto& st = from.engine.stats();
    const auto& ev = from.events;
    const auto& c = reg.counters();
    tables_.Set(static_cast<double>(reg.tables().size()));
    const auto entries = reg.entry_count();
    entries_.Set(static_cast<double>(entries));
    dangling_.Set(static_cast<double>(from.engine.catalog().dangling_names().size()));
    // Peers by state cost a pass over self's table: at most once a second.
    if (const auto now = monotonic_usec(); states_usec_ == 0 || now - states_usec_ >= 1'000'000) {
        states_usec_ = now;
        const auto states = from.engine.state_counts();
        auto count = [&states](PeerState s) {
            return static_cast<double>(states[static_cast<std::size_t>(s)]);
        };
        for (std::size_t i = 0; i < peers_.size(); ++i)
            peers_[i]->Set(count(static_cast<PeerState>(i)));
        // Every namespace seen, with an id or not: the leaks and the oldest leaking-since.
        const auto all = from.engine.leaking();
        const auto wall = realtime_usec();
        for (std::size_t i = 0; i < leak_oldest_.size(); ++i) {
            if (leak_oldest_[i] == nullptr)
                continue;
            const auto oldest = all.count[i] != 0 ? all.oldest[i] : 0;
            leak_oldest_[i]->Set(
                oldest != 0 && wall > oldest ? static_cast<double>(wall - oldest) / 1e6 : 0.0);
            leaking_[i]->Set(static_cast<double>(all.count[i]));
        }
    }
    advance(events_new_, ev.new_events);
    advance(events_del_, ev.del_events);
    advance(events_foreign_, ev.foreign_events);
    advance(batches_, c.batches);
    advance(sweeps_, c.sweeps);
    advance(purged_peers_, c.deaths);
    advance(purged_entries_, c.purged_entries);
    advance(overruns_, ev.overruns);
    advance(malformed_, ev.malformed);
    advance(read_pauses_, from.read_pauses);
    for (std::size_t i = 0; i < resyncs_.size(); ++i)
        advance(*resyncs_[i], st.resyncs[i]);
    advance(resync_failures_, st.resync_failures);
    last_resync_.Set(static_cast<double>(st.last_resync_usec) / 1e6);
    advance(denials_, from.denials);
    if (from.server != nullptr) {
        connections_.Set(static_cast<double>(from.server->connections()));
        watchers_.Set(static_cast<double>(from.server->subscribers()));
        advance(refused_, from.server->stats().refused);
        advance(dropped_watchers_, from.server->stats().dropped_subscribers);
    }
}

void Metrics::count_request(std::string_view method, bool ok) {
    std::string_view name = "other";
    for (auto m : methods_)
        if (m == method)
            name = m;
    requests_.Add({{"method", std::string(name)}, {"result", ok ? "ok" : "error"}}).Increment();
}

void Metrics::set_namespaces(std::size_t count, std::optional<std::uint64_t> limit) {
    netns_count_.Set(static_cast<double>(count));
    if (limit)
        netns_limit_.Set(static_cast<double>(*limit));
}

std::string Metrics::text() const {
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, registry_->Collect());
    return out.str();
}

} // namespace nsidd::daemon
