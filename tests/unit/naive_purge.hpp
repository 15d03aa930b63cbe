// SPDX-License-Identifier: LGPL-2.1-or-later
// The naive per-peer purge: for each dead peer, scan every table. O(dying x entries). The test
// oracle and the benchmark baseline for Registry's single sweep; never used by nsidd itself.
#pragma once

#include <map>
#include <set>

#include "registry/registry.hpp"

namespace nsidd::registry::testing {

/// observer -> (nsid -> self id of the peer, -1 if unknown)
using Tables = std::map<Observer, std::map<Nsid, Nsid>>;

inline Tables naive_tables(const Registry& r) {
    Tables out;
    for (const auto& [o, t] : r.tables())
        for (const auto& [k, row] : t.rows)
            out[o][k] = row.entry.current_nsid.value_or(-1);
    return out;
}

/// Removes, peer by peer, each dead peer's own table and every row that points at it.
inline void naive_purge(Tables& tables, const std::set<Nsid>& dying) {
    for (Nsid dead : dying) {
        tables.erase(dead);
        for (auto& [o, rows] : tables)
            for (auto it = rows.begin(); it != rows.end();)
                it = it->second == dead ? rows.erase(it) : std::next(it);
    }
    std::erase_if(tables, [](const auto& kv) { return kv.first != kSelf && kv.second.empty(); });
}

} // namespace nsidd::registry::testing
