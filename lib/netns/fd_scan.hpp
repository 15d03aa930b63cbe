// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

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

/// What an fd search looks for.
struct FdSearch {
    /// nsfs inodes of the namespaces sought.
    std::unordered_set<std::uint64_t> inodes;
    /// Cookies of the namespaces sought through their sockets (cookie -> inode: reported under
    /// the inode).
    std::unordered_map<std::uint64_t, std::uint64_t> sockets;
    /// Also identify the namespaces held by fds that are none of the known ones: some rows have
    /// an id and no identity (their namespace was born before nsidd looked).
    bool identify = false;
    /// Also report the network namespaces held by nsfs fds (by their links: no socket is
    /// copied for this) that are none of the known ones: namespaces without an id in self's
    /// table that only an fd holds.
    bool unknown_nsfs = false;
    std::unordered_set<std::uint64_t> known_inodes;
    std::unordered_set<std::uint64_t> known_cookies;
    /// Processes of these users are not copied from: one of theirs swapped an fd under a copy.
    std::unordered_set<uid_t> no_copies_from;
};

/// The command name of a search process (nsidd's fd searches run in processes of their own):
/// a search passes over the search processes of its own user (another nsidd's, whose fds on
/// the namespaces it identifies are no holders).
inline constexpr const char* kSearchComm = "nsidd-search";

/// A namespace that no known one is, met through an fd; `fd` is open on it (nsfs) for the
/// caller to ask its id, then close.
struct HeldNamespace {
    std::uint64_t inode = 0;
    std::uint64_t cookie = 0; ///< NS_GET_ID; 0 where the kernel lacks it
    UniqueFd fd;
};

/// A process that replaced an fd between the look that said "socket" and the copy: the copy
/// is another kind of file, which is never closed (its close may wait on whoever serves it).
struct Swapped {
    pid_t pid = 0;
    uid_t uid = 0;
    int fd = 0;
    bool operator==(const Swapped&) const = default;
};

/// What an fd search met.
struct FdFound {
    /// Holders of the namespaces sought or identified, by nsfs inode.
    std::unordered_map<std::uint64_t, std::vector<FdHolder>> holders;
    std::vector<HeldNamespace> identified;
    /// FdSearch::unknown_nsfs (without identify): those met, as (inode, cookie); no fd is kept
    /// on them (each was open for a moment, to read its cookie).
    std::vector<std::pair<std::uint64_t, std::uint64_t>> unknown;
    std::vector<Swapped> swapped;
    std::uint64_t looked_at = 0;     ///< processes and fds
    std::uint64_t copies_denied = 0; ///< pidfd_getfd refused (EPERM, ENOSYS)
    bool complete = false;           ///< every process was looked at
};

/// Searches every process's open fds for the namespaces sought, under rules that nothing
/// another user owns can stall (docs/design.md, "Holders"):
/// - an nsfs fd is known by readlink of /proc/PID/fd/N ("net:[INODE]"), never copied; where
///   an fd on it is needed (to identify it), the link is opened O_PATH, checked to be that
///   nsfs file through nsidd's own fdinfo, and reopened through /proc/self/fd: an nsfs open;
/// - a socket is copied (pidfd_getfd) only after readlink (or, where nsidd may not read the
///   link, fdinfo) says it is one, and the copy is checked to be that socket before it is
///   used; a copy that is not (the fd was swapped meanwhile) is never closed, and the search
///   copies nothing more;
/// - nothing is stat'ed through an fd link, and no other kind of fd is opened or copied.
/// A socket's close may still linger: the search runs in a process of its own
/// (daemon/fd_search.hpp), which the daemon ends at its deadline.
class FdScan {
public:
    explicit FdScan(std::string proc_dir);
    /// Walks every process once, but the caller and its parent (the search runs in a process
    /// nsidd forks); stops early (found.complete false) when `stop` is set.
    FdFound run(const FdSearch& search, const std::atomic<bool>& stop);

private:
    struct Process;
    void scan_process(Process& p, const FdSearch& search, FdFound& found);
    // How an fd was seen to be an nsfs file: its link (net:[INODE]), its link "/" (the root of
    // a mount since detached: a namespace file opened through a bind mount since unmounted),
    // or its fdinfo only (a process whose links nsidd may not read).
    enum class Seen : std::uint8_t { Link, DetachedRoot, FdInfo };
    void on_nsfs(Process& p, const char* fd, std::uint64_t inode, Seen seen, const FdSearch& search,
                 FdFound& found);
    void on_socket(Process& p, const char* fd, std::uint64_t inode, const FdSearch& search,
                   FdFound& found);
    std::optional<std::uint64_t> socket_cookie(Process& p, const char* fd, std::uint64_t inode,
                                               const FdSearch& search, FdFound& found);
    void add_holder(Process& p, const char* fd, std::uint64_t inode, bool socket, FdFound& found);
    // A search process of our own user (another nsidd's): passed over.
    bool is_own_search(Process& p);

    std::string proc_dir_;
    std::uint64_t nsfs_mnt_ = 0;   // mount id of nsfs (an fd opened via /proc/PID/ns/*)
    std::uint64_t sockfs_mnt_ = 0; // mount id of sockfs
    dev_t nsfs_dev_ = 0;           // nsfs's device
    bool copying_ = true;          // false once a copy was met swapped
    std::unordered_map<std::uint64_t, std::uint64_t> socket_ns_;    // socket inode -> cookie
    std::unordered_map<std::uint64_t, std::uint64_t> cookie_inode_; // identified by socket
    std::unordered_set<std::uint64_t> identified_;                  // inodes
};

/// The mount id and inode of an open file, from the first lines of an fdinfo file (open as
/// `dirfd`/`name`); nullopt when it could not be read. Asks no file system.
struct FdInfo {
    std::uint64_t mnt_id = 0;
    std::uint64_t inode = 0;
};
std::optional<FdInfo> read_fdinfo(int dirfd, const char* name);
/// Whether fd `fd` of process `pid` is still the nsfs file of namespace `inode`, by its link
/// alone ("net:[INODE]", or "/" and fdinfo's inode for one opened through a bind mount since
/// unmounted): a holder found by an earlier search, looked at again. Asks no file system.
bool still_holds(const std::string& proc_dir, int pid, int fd, std::uint64_t inode);
/// The same for an fd of our own (proc_dir/self/fdinfo/FD).
std::optional<FdInfo> own_fdinfo(const std::string& proc_dir, int fd);

/// The search's findings as text for the pipe from its process, and back (the fds of
/// `identified` travel beside it, in order). decode_found() rejects malformed or oversized
/// text (nullopt). Pure.
std::string encode_found(const FdFound& found);
std::optional<FdFound> decode_found(std::string_view text, std::vector<UniqueFd> fds);

} // namespace nsidd::netns
