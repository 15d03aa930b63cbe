// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "netns/queries.hpp"
#include "registry/registry.hpp"
#include "util/result.hpp"

namespace nsidd::mirror {

using registry::Nsid;
using registry::Observer;

/// The kernel as the engine sees it: the nsid event stream, dumps and per-id questions
/// (docs/kernel.md). The daemon implements it with rtnetlink sockets; the unit tests with a
/// model that truncates dumps, reuses ids and overruns like the real one.
class Kernel : public netns::Queries {
public:
    /// One row of a dumped table.
    struct Row {
        Nsid nsid = 0;
        std::optional<Nsid> current_nsid; ///< self's id for the same peer, when it has one
    };
    /// A dumped table. `maybe_cut`: the reply filled its one buffer, so rows past it may be
    /// missing (Linux >= 6.10 ends such a dump silently; docs/kernel.md, "Dumps are cut").
    struct Dump {
        std::vector<Row> rows;
        bool maybe_cut = false;
    };
    /// What one drain of the event socket read.
    struct Events {
        /// Decoded events in arrival order: self's as observer kSelf, another table's as
        /// observer = self's id for the namespace it happened in.
        std::vector<registry::Op> ops;
        /// Events were lost (overrun, malformed datagram): a resync must follow, and `ops`
        /// cannot be applied across the hole.
        bool lost = false;
    };

    /// Reads every queued event until the queue is empty.
    virtual Events receive() = 0;
    /// Dumps self's table, or `target`'s (self's id for that namespace).
    virtual Result<Dump> dump(std::optional<Observer> target) = 0;
    /// For each of self's ids: the id that `target`'s table has for the same peer (no target:
    /// the id itself), or nullopt where there is none. Fails when the exchange fails.
    virtual Result<std::vector<std::optional<Nsid>>> translate(std::span<const Nsid> self_ids,
                                                               std::optional<Observer> target) = 0;
    /// Self's id for its own namespace, if it has one (events from there count as local).
    virtual std::optional<Nsid> own_id() = 0;
    /// `target`'s id for self's own namespace, if it has one: which of its rows names us.
    virtual std::optional<Nsid> own_id_in(Observer target) = 0;
};

} // namespace nsidd::mirror
