// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cerrno>
#include <string>
#include <system_error>
#include <type_traits>

#include <tl/expected.hpp>

namespace nsidd {

/// nsidd's own error conditions; kernel and libc errors stay in std::system_category.
enum class Errc {
    Malformed = 1, ///< input bytes violate their format (netlink frame, JSON, config)
    Truncated,     ///< input ends before a length it announced
    TooLarge,      ///< input exceeds a configured or protocol bound
    Timeout,       ///< the peer did not answer in time
    Closed,        ///< the peer closed the connection
    Protocol,      ///< the peer answered something the protocol does not allow
    Unavailable,   ///< a listener or service could not be started (the log says why)
    Rejected,      ///< the peer answered the request with an error
};

/// The category of Errc values.
const std::error_category& nsidd_category() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
    return {static_cast<int>(e), nsidd_category()};
}

/// A value or the reason there is none.
template <typename T> using Result = tl::expected<T, std::error_code>;

/// Wraps an error for returning from a function that yields Result<T>.
inline tl::unexpected<std::error_code> fail(std::error_code ec) noexcept {
    return tl::unexpected<std::error_code>(ec);
}
inline tl::unexpected<std::error_code> fail(Errc e) noexcept {
    return fail(make_error_code(e));
}
/// The error for errno value `e` (positive), in std::system_category.
inline tl::unexpected<std::error_code> fail_errno(int e = errno) noexcept {
    return fail(std::error_code(e, std::system_category()));
}

} // namespace nsidd

template <> struct std::is_error_code_enum<nsidd::Errc> : std::true_type {};
