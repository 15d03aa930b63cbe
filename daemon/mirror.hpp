// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <array>
#include <map>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "netlink/socket.hpp"
#include "netns/catalog.hpp"
#include "netns/discovery.hpp"
#include "registry/registry.hpp"
#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace nsidd::daemon {

enum class ResyncReason : std::uint8_t { Startup, Overrun, Periodic, Manual, Count };
/// "startup", "overrun", "periodic", "manual".
const char* to_string(ResyncReason reason) noexcept;

/// What the mirror did, for status and metrics.
struct MirrorStats {
    std::uint64_t datagrams = 0;
    std::uint64_t overruns = 0;   ///< ENOBUFS on the event socket
    std::uint64_t malformed = 0;  ///< datagrams that failed to parse (each forces a resync)
    std::uint64_t not_kernel = 0; ///< datagrams not sent by the kernel, dropped
    std::uint64_t foreign_events =
        0;                         ///< events from other namespaces' tables (self scope: ignored)
    std::uint64_t nsid_events = 0; ///< local RTM_NEWNSID/RTM_DELNSID received
    std::uint64_t new_events = 0;  ///< of which RTM_NEWNSID
    std::uint64_t del_events = 0;  ///< of which RTM_DELNSID
    std::array<std::uint64_t, static_cast<std::size_t>(ResyncReason::Count)> resyncs{};
    std::uint64_t resync_failures = 0;
    std::uint64_t last_resync_usec = 0; ///< CLOCK_REALTIME of the last good resync
    std::uint64_t last_resync_duration_usec = 0;
    std::uint64_t last_probes = 0;    ///< GETs the last resync needed
    bool last_dump_truncated = false; ///< the last dump filled its one buffer
};

/// What is known of whatever holds a peer alive (see Mirror::state).
enum class PeerState : std::uint8_t { Resolved, Orphaned, Unknown };
/// "resolved", "orphaned", "unknown".
const char* to_string(PeerState state) noexcept;

/// The self-scope mirror: the event and request sockets around the registry. Glue, not policy:
/// it returns changes and lets the caller publish and log them.
class Mirror {
public:
    struct Config {
        int rcvbuf = 8 << 20;
        netns::Roots roots;
        std::size_t history = 1024;
        /// Also mirror the table of every namespace that self has an id for.
        bool host = false;
        /// Give every namespace discovery finds without an id one (changes kernel state).
        bool assign_ids = false;
        /// How long a peer may go without a process or a bind mount before it is orphaned.
        std::uint64_t orphan_grace_usec = 60'000'000;
    };

    /// Subscribes to RTNLGRP_NSID first (on `event_fd` when the service manager passed one),
    /// then opens the request socket. The registry stays empty until resync().
    static Result<std::unique_ptr<Mirror>> open(const Config& config,
                                                std::optional<UniqueFd> event_fd);

    int event_fd() const noexcept { return events_.fd(); }
    const netlink::EventSocket& event_socket() const noexcept { return events_; }

    /// Reads the whole table (dump, and probes when the dump may be truncated), applies the
    /// difference, then applies the events queued meanwhile in reconcile mode. Repeats when an
    /// overrun hits during the read.
    Result<std::vector<registry::Change>> resync(ResyncReason reason);

    /// Result of draining the event socket.
    struct Drained {
        std::vector<registry::Change> changes;
        bool lost = false;      ///< an overrun or a malformed datagram: resync now
        std::size_t events = 0; ///< local nsid events read
    };
    /// Reads every queued datagram as one batch and applies it; after a loss applies nothing,
    /// since the resync the caller then runs supersedes it.
    Drained drain(bool reconcile = false);

    /// Discovery: rereads the nsfs mounts and attaches what it learned to the entries.
    void discover_mounts();
    /// Ids appeared that no known namespace explains: call refresh_ids() soon. Deferred so
    /// that a burst of NEWs costs one round of GETs, not one per batch.
    bool refresh_due() const noexcept { return refresh_due_; }
    /// Asks the namespaces that had no id for it again, until `deadline_usec`
    /// (CLOCK_MONOTONIC); refresh_due() stays true while some are left to ask.
    void refresh_ids(std::uint64_t deadline_usec);
    /// Discovery: walks up to `budget` more processes of the current /proc pass. Returns true
    /// when the pass ended (then every peer's verdict was renewed). `mounts`: reread the mount
    /// table as the pass begins (needed only where its changes are not watched).
    bool discover_processes(std::size_t budget, bool mounts);

    /// The entry as served: a row of another observer's table names its peer through
    /// current_nsid, so it gets the identity of self's row for that peer.
    registry::Entry view(registry::Observer observer, const registry::Entry& entry) const;
    /// Resolved: a process or a bind mount held the peer at the last look. Orphaned: nothing
    /// that discovery can see has held it for longer than the grace period (an open fd, a
    /// socket or the kernel keeps it alive). Unknown: not (yet) decided.
    PeerState state(registry::Observer observer, const registry::Entry& entry) const;
    /// Peers of self by state.
    std::array<std::size_t, 3> state_counts() const;
    const netns::Catalog& catalog() const noexcept { return catalog_; }

    /// Takes the ids a previous nsidd saved at `path` (same boot, same namespace) as hints, so
    /// that the bootstrap need not ask the kernel for them. Returns false when there is no
    /// such file or it does not apply (then nothing changes).
    bool load_ids(const std::string& path);
    /// Saves the ids the catalog knows to `path` (atomically, mode 0600) if they changed since
    /// the last save.
    Result<void> save_ids(const std::string& path);

    /// Reads and drops every queued datagram (a resync that supersedes them is due). Returns
    /// how many were read.
    std::size_t discard();

    /// Self's id for the namespace named `name` under /run/netns, if it has one.
    std::optional<registry::Nsid> nsid_of_name(const std::string& name);

    const registry::Registry& registry() const noexcept { return registry_; }
    const MirrorStats& stats() const noexcept { return stats_; }

private:
    Mirror(netlink::EventSocket events, netlink::RequestSocket requests, const Config& config);
    // The kernel's current self table.
    Result<std::vector<registry::Entry>> read_table(registry::Source source);
    // Host scope: observer `o`'s table as nsid -> self's id for the same peer (-1: none),
    // read once per batch (TARGET_NSID dump, and probes when the dump may be cut); nullptr when
    // it cannot be read (the observer died, or no CAP_NET_ADMIN over it).
    const std::map<registry::Nsid, registry::Nsid>* foreign_table(registry::Observer o);
    std::vector<registry::Entry> foreign_entries(registry::Observer o, registry::Source source);
    // Host scope: reads the tables of observers that self gained an id for in `changes`.
    void read_new_observers(std::vector<registry::Change>& changes);
    bool is_assigned(registry::Observer observer, registry::Nsid nsid);
    // Attaches identities to self's rows: those `changes` added (asking the kernel again for
    // namespaces without an id when one is unaccounted for), and forgets the dead.
    void identify(const std::vector<registry::Change>& changes);
    // Whether some row of self's table has no identity yet: only then must namespaces met for
    // the first time be asked for their id.
    bool unexplained_rows() const;
    // Copies what the catalog learned since the last call onto self's rows.
    void attach_updated();
    // After a /proc pass: renews every verdict of self's rows.
    void renew_verdicts();
    static registry::Identity identity_of(const netns::Namespace& ns);

    // Whether anything held self's row for a peer at the last look.
    struct Verdict {
        std::uint64_t row_since = 0;    // the row it is about (ids are reused)
        std::uint64_t unheld_since = 0; // 0: held; else CLOCK_REALTIME since when not
    };

    netlink::EventSocket events_;
    netlink::RequestSocket requests_;
    Config config_;
    registry::Registry registry_;
    MirrorStats stats_;
    std::optional<std::int32_t> self_id_; // our own netns's id in its own table, if any
    std::map<registry::Observer, std::optional<std::map<registry::Nsid, registry::Nsid>>>
        foreign_cache_; // per batch
    netns::Catalog catalog_;
    std::map<registry::Nsid, Verdict> verdicts_;
    std::uint64_t pass_started_usec_ = 0;
    bool refresh_due_ = false;
    bool another_round_ = false; // ids arrived unexplained while a round was under way
    std::uint64_t saved_ids_version_ = UINT64_MAX;
    // What ties saved ids to this boot and this observer (see Catalog::export_ids).
    std::string boot_id_;
    std::uint64_t self_cookie_ = 0;
    void read_origin();
    bool verdicts_due_ = false; // read_table() ended a pass; renew once the rows are in
};

} // namespace nsidd::daemon
