// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstdint>
#include <string>

namespace nsidd {

/// Microseconds since the epoch (CLOCK_REALTIME).
std::uint64_t realtime_usec() noexcept;
/// Microseconds since boot (CLOCK_MONOTONIC).
std::uint64_t monotonic_usec() noexcept;
/// RFC 3339 UTC time with microseconds, e.g. "2026-11-27T21:00:00.123456Z".
std::string format_iso8601(std::uint64_t realtime_usec);
/// A short duration such as "42s", "3min", "2h 5min" or "1d 4h".
std::string format_duration(std::uint64_t usec);
/// A relative age such as "3min ago", for `now - then`.
std::string format_age(std::uint64_t then_usec, std::uint64_t now_usec);

} // namespace nsidd
