// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <dirent.h>
#include <sys/types.h>

#include "util/unique_fd.hpp"

namespace nsidd::netns {

/// An open file descriptor of some process that holds a network namespace: the namespace
/// itself (an nsfs file, e.g. /proc/PID/ns/net or a /run/netns file opened and kept), or a
/// socket created inside it.
struct FdHolder {
    pid_t pid = 0;
    std::string comm;
    int fd = 0;
    bool socket = false;
    bool operator==(const FdHolder&) const = default;
};

/// Searches every process's open fds (/proc/PID/fd) for namespaces that nothing else visibly
/// holds, in slices: a pass over a host with thousands of processes and fds never stalls the
/// caller longer than its budget. nsfs files are matched by inode (opened through
/// /proc/PID/ns/net or through a bind mount); sockets by the cookie of the namespace they were
/// created in (SO_NETNS_COOKIE on a copy taken with pidfd_getfd, closed at once; each socket
/// asked once per pass). A process whose /proc/PID/fd nsidd may not list (another user's, where
/// nsidd runs without CAP_DAC_READ_SEARCH, as its unit does) is listed through /proc/PID/fdinfo
/// (ptrace access) and each fd looked at through a copy. What is sought is fixed for the
/// duration of a pass.
class FdScan {
public:
    explicit FdScan(std::string proc_dir) : proc_dir_(std::move(proc_dir)) {}

    /// Starts a pass looking for these nsfs inodes, and for sockets of the namespaces with
    /// these cookies (cookie -> inode: they are reported under the inode), abandoning one
    /// under way.
    void start(std::unordered_set<std::uint64_t> inodes,
               std::unordered_map<std::uint64_t, std::uint64_t> sockets = {});
    bool running() const noexcept { return proc_ != nullptr; }
    /// Looks at up to `budget` more entries (processes and fds). True when the pass ended:
    /// then found() holds what it met.
    bool step(std::size_t budget);
    /// The holders the last completed pass met, by inode.
    const std::unordered_map<std::uint64_t, std::vector<FdHolder>>& found() const noexcept {
        return found_;
    }
    /// Fd copies refused (EPERM, ENOSYS) in all: sockets and the fds of processes nsidd may not
    /// list cannot be searched.
    std::uint64_t copies_denied() const noexcept { return copies_denied_; }
    /// Entries looked at in all (for the cost in status and benchmarks).
    std::uint64_t looked_at() const noexcept { return looked_at_; }

private:
    bool next_process();
    // The inode sought that the fd is (or, `socket` set, whose socket it is), if any.
    std::optional<std::uint64_t> match(const char* name, bool& socket);
    std::optional<std::uint64_t> match_socket(std::string_view link, const char* name);
    std::optional<std::uint64_t> match_copy(const char* name, bool& socket);
    std::optional<std::uint64_t> socket_namespace(std::uint64_t socket_inode, int fd);
    UniqueFd copy_fd(const char* name);
    void finish();

    std::string proc_dir_;
    std::unordered_set<std::uint64_t> sought_;
    std::unordered_map<std::uint64_t, std::uint64_t> sockets_;   // netns cookie -> inode
    std::unordered_map<std::uint64_t, std::uint64_t> socket_ns_; // socket inode -> netns cookie
    UniqueFd pidfd_;           // of pid_, opened at its first socket
    bool pidfd_tried_ = false; // opening it failed: no socket of pid_ can be asked
    bool copies_ = false;      // pid_'s fds are listed from fdinfo and looked at as copies
    std::unique_ptr<DIR, int (*)(DIR*)> proc_{nullptr, ::closedir};
    std::unique_ptr<DIR, int (*)(DIR*)> fds_{nullptr, ::closedir};
    pid_t pid_ = 0;
    std::string comm_; // of pid_, read when it is first needed
    bool comm_read_ = false;
    std::unordered_map<std::uint64_t, std::vector<FdHolder>> pass_, found_;
    std::uint64_t looked_at_ = 0;
    std::uint64_t copies_denied_ = 0;
    std::optional<dev_t> nsfs_dev_; // the nsfs device, from our own namespace's file
};

} // namespace nsidd::netns
