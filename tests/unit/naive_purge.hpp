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

inline Nsid naive_peer(Observer, Nsid peer) {
    return peer;
}
inline Nsid naive_peer(Observer o, const Registry::Row& row) {
    return peer_of(o, row.entry).value_or(-2);
}

/// Removes, peer by peer, each dead peer's own table and every row that points at it.
/// `rows_of(table)` gives the nsid -> row map of a table.
template <typename Map, typename RowsOf>
std::size_t naive_purge(Map& tables, const std::set<Nsid>& dying, RowsOf rows_of) {
    std::size_t removed = 0;
    for (Nsid dead : dying) {
        if (auto t = tables.find(dead); t != tables.end()) {
            removed += rows_of(t->second).size();
            tables.erase(t);
        }
        for (auto& [o, table] : tables) {
            auto& rows = rows_of(table);
            for (auto it = rows.begin(); it != rows.end();) {
                if (naive_peer(o, it->second) == dead) {
                    it = rows.erase(it);
                    ++removed;
                } else {
                    ++it;
                }
            }
        }
    }
    return removed;
}

inline void naive_purge(Tables& tables, const std::set<Nsid>& dying) {
    naive_purge(
        tables, dying, [](auto& rows) -> auto& { return rows; });
    std::erase_if(tables, [](const auto& kv) { return kv.first != kSelf && kv.second.empty(); });
}

} // namespace nsidd::registry::testing
