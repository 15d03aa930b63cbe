// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "util/result.hpp"

namespace nsidd::netns {

/// What discovery asks the kernel about a namespace it holds open for a moment. Discovery opens
/// and reads files; these questions are the engine's to answer (the daemon with NS_GET_ID and
/// rtnetlink, the unit tests with a model).
class Queries {
public:
    virtual ~Queries() = default;
    /// The namespace's cookie (NS_GET_ID: never reused within a boot). Fails with ENOTTY where
    /// the kernel lacks the ioctl.
    virtual Result<std::uint64_t> cookie(int fd) = 0;
    /// Self's id for each open namespace, in order (nullopt: it has none). Fails only when the
    /// kernel could not be asked at all.
    virtual Result<std::vector<std::optional<std::int32_t>>> ids_of(std::span<const int> fds) = 0;
    /// Gives the namespace an id in self's table (the kernel picks the lowest free one).
    virtual Result<void> assign(int fd) = 0;
};

} // namespace nsidd::netns
