// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <optional>

namespace nsidd {

/// An optional number that is never 0 when known (a namespace cookie, an inode, a wall-clock
/// time): 0 stands for unknown. Reads as std::optional<T>, in half its size (no flag and no
/// padding beside the value), for the fields kept in every row.
template <typename T> class Nonzero {
public:
    constexpr Nonzero() noexcept = default;
    constexpr Nonzero(std::nullopt_t) noexcept {}          // NOLINT: as std::optional
    constexpr Nonzero(T value) noexcept : value_(value) {} // NOLINT: 0 is unknown
    constexpr Nonzero(const std::optional<T>& o) noexcept  // NOLINT
        : value_(o.value_or(T{})) {}

    constexpr bool has_value() const noexcept { return value_ != T{}; }
    constexpr explicit operator bool() const noexcept { return has_value(); }
    constexpr const T& operator*() const noexcept { return value_; }
    constexpr T value_or(T other) const noexcept { return has_value() ? value_ : other; }
    constexpr void reset() noexcept { value_ = T{}; }
    constexpr std::optional<T> optional() const noexcept {
        return has_value() ? std::optional<T>(value_) : std::nullopt;
    }

    friend constexpr bool operator==(Nonzero a, Nonzero b) noexcept { return a.value_ == b.value_; }

private:
    T value_{};
};

} // namespace nsidd
