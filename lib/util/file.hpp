// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <sys/types.h>

#include "util/result.hpp"

namespace nsidd {

/// The whole file (procfs files included, which report no size). Never follows a symlink as
/// the last component (ELOOP). Fails with Errc::TooLarge past `max_bytes`.
Result<std::string> read_file(const std::string& path, std::size_t max_bytes = 64u << 20);

/// A short symlink's text (a /proc magic link: "mnt:[4026531841]"), or "" when it cannot be
/// read.
std::string read_link(const std::string& path);

/// Writes `text` to PATH.tmp (created anew with exactly `mode`, never through a symlink) and
/// renames it over `path`: a reader sees the old file or the new one, never a part.
Result<void> write_file_atomic(const std::string& path, std::string_view text, mode_t mode);

} // namespace nsidd
