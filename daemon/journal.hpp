// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <memory>
#include <source_location>
#include <span>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace nsidd::daemon {

/// Events an operator may want to find or alert on; each has a journal MESSAGE_ID.
enum class Notable {
    Started,
    Overrun,
    Resync,
    DeathBurst,
    PermissionDenied,
    StaleMount, ///< a peer newly held only by a stale-mount path
    FdHeld,     ///< a peer newly held only by fds of other processes
    Pinned,     ///< a peer nothing visible holds: the kernel does
    Stopped
};

/// The MESSAGE_ID of a notable event (32 hex digits).
std::string_view message_id(Notable event) noexcept;

/// Logs `text` at `level`, tagged with the event's MESSAGE_ID and the caller's location when
/// the log goes to the journal, with `fields` ("KEY=value" each) as further journal fields.
void log_notable(Notable event, spdlog::level::level_enum level, std::string_view text,
                 std::span<const std::string> fields = {},
                 std::source_location where = std::source_location::current());

/// Sets spdlog's level from --log-level's name ("warning" is spdlog's "warn").
void set_log_level(const std::string& name);

/// True when stderr is the journal's stream (JOURNAL_STREAM names its device and inode).
bool stderr_is_journal();

/// A sink that writes structured journal entries: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER,
/// CODE_FILE/CODE_LINE/CODE_FUNC and, for notable events, MESSAGE_ID.
std::shared_ptr<spdlog::sinks::sink> make_journal_sink();

} // namespace nsidd::daemon
