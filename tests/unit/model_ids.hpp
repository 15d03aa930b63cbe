// SPDX-License-Identifier: LGPL-2.1-or-later
// What the simulated kernels of the unit tests share: the kernel's choice of an automatic id.
#pragma once

#include <map>

#include "registry/registry.hpp"

namespace nsidd::test {

/// The lowest id not taken in `table`, as the kernel picks an automatic id (idr_alloc from 0).
template <typename Peer> registry::Nsid lowest_free(const std::map<registry::Nsid, Peer>& table) {
    registry::Nsid k = 0;
    for (const auto& [id, p] : table) {
        if (id != k)
            break;
        ++k;
    }
    return k;
}

} // namespace nsidd::test
