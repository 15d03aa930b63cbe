// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/fd_scan.hpp"

#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string_view>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "netns/discovery.hpp"
#include "netns/mountinfo.hpp"
#include "util/file.hpp"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71 // Linux 5.14
#endif

namespace nsidd::netns {

void FdScan::start(std::unordered_set<std::uint64_t> inodes,
                   std::unordered_map<std::uint64_t, std::uint64_t> sockets) {
    if (!nsfs_dev_) {
        struct stat st {};
        if (::stat((proc_dir_ + "/self/ns/net").c_str(), &st) == 0)
            nsfs_dev_ = st.st_dev;
    }
    sought_ = std::move(inodes);
    sockets_ = std::move(sockets);
    socket_ns_.clear();
    pass_.clear();
    fds_.reset();
    proc_.reset(::opendir(proc_dir_.c_str()));
}

// Opens the fd directory of the next process; false when /proc is done.
bool FdScan::next_process() {
    for (;;) {
        const dirent* d = ::readdir(proc_.get());
        if (d == nullptr)
            return false;
        ++looked_at_;
        char* end = nullptr;
        const long pid = std::strtol(d->d_name, &end, 10);
        if (pid <= 0 || *end != '\0')
            continue;
        const auto base = proc_dir_ + "/" + d->d_name;
        fds_.reset(::opendir((base + "/fd").c_str()));
        copies_ = !fds_ && errno == EACCES;
        if (copies_) // not ours, and no CAP_DAC_READ_SEARCH: its fd numbers from fdinfo
            fds_.reset(::opendir((base + "/fdinfo").c_str()));
        if (!fds_)
            continue; // gone, or a kernel thread
        pid_ = static_cast<pid_t>(pid);
        comm_read_ = false;
        pidfd_.reset();
        pidfd_tried_ = false;
        return true;
    }
}

void FdScan::finish() {
    fds_.reset();
    proc_.reset();
    pidfd_.reset();
    socket_ns_.clear();
    found_ = std::move(pass_);
    pass_.clear();
}

// The nsfs inode sought that fd `name` of the current process is, if it is one. An fd opened
// through /proc/PID/ns/net reads back as "net:[INODE]"; one opened through a bind mount reads
// back as that mount's path (or "/" once it is unmounted), so a path is stat'ed (through the
// fd's magic link, with AT_STATX_DONT_SYNC: cached attributes, never a round trip to a network
// file system) and matched by the nsfs device and inode. Sockets, pipes and anonymous inodes
// ("socket:[...]") are no namespace: the readlink alone rules them out, and a socket is asked
// for its namespace only while sockets are sought.
std::optional<std::uint64_t> FdScan::match(const char* name, bool& socket) {
    char target[64];
    const ssize_t len = ::readlinkat(::dirfd(fds_.get()), name, target, sizeof target);
    if (len <= 0)
        return std::nullopt;
    const std::string_view link(target, static_cast<std::size_t>(len));
    socket = link.starts_with("socket:[");
    if (socket)
        return sockets_.empty() ? std::nullopt : match_socket(link, name);
    if (link.front() != '/') {
        const auto inode = net_root_inode(link);
        return inode && sought_.count(*inode) ? inode : std::nullopt;
    }
    struct statx stx {};
    if (!nsfs_dev_ || ::statx(::dirfd(fds_.get()), name, AT_STATX_DONT_SYNC, STATX_INO, &stx) < 0 ||
        makedev(stx.stx_dev_major, stx.stx_dev_minor) != *nsfs_dev_ || !sought_.count(stx.stx_ino))
        return std::nullopt;
    return stx.stx_ino;
}

// A copy of fd `name` of the current process (pidfd_getfd), or an invalid fd.
UniqueFd FdScan::copy_fd(const char* name) {
    if (!pidfd_ && !pidfd_tried_) {
        pidfd_tried_ = true;
        pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
    }
    if (!pidfd_)
        return UniqueFd();
    UniqueFd copy(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd_.get(), std::atoi(name), 0)));
    if (!copy && (errno == EPERM || errno == ENOSYS))
        ++copies_denied_; // a seccomp filter (a container's), or no ptrace access
    return copy;
}

// The same as match(), for a process whose fd links nsidd may not read (another user's, as
// the service runs without CAP_DAC_READ_SEARCH): each fd is looked at through a copy, closed
// at once. An nsfs file is matched by device and inode, a socket by its namespace's cookie.
std::optional<std::uint64_t> FdScan::match_copy(const char* name, bool& socket) {
    const auto copy = copy_fd(name);
    struct stat st {};
    if (!copy || ::fstat(copy.get(), &st) < 0)
        return std::nullopt;
    socket = S_ISSOCK(st.st_mode);
    if (socket)
        return sockets_.empty() ? std::nullopt : socket_namespace(st.st_ino, copy.get());
    if (!nsfs_dev_ || st.st_dev != *nsfs_dev_ || !sought_.count(st.st_ino))
        return std::nullopt;
    return st.st_ino;
}

// The inode sought whose namespace the socket (`socket_inode`, open as `fd` here) was created
// in, if any; each socket asked once per pass.
std::optional<std::uint64_t> FdScan::socket_namespace(std::uint64_t socket_inode, int fd) {
    auto known = socket_ns_.find(socket_inode);
    if (known == socket_ns_.end()) {
        std::uint64_t cookie = 0;
        socklen_t size = sizeof cookie;
        if (::getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &size) < 0)
            return std::nullopt;
        known = socket_ns_.emplace(socket_inode, cookie).first;
    }
    const auto it = sockets_.find(known->second);
    return it == sockets_.end() ? std::nullopt : std::optional(it->second);
}

// A socket's namespace is its SO_NETNS_COOKIE, read on a copy of the fd (pidfd_getfd needs
// ptrace access to the process: CAP_SYS_PTRACE). The copy is closed at once: nsidd never keeps
// anything inside a namespace it watches. Sockets shared between fds and processes are asked
// once per pass.
std::optional<std::uint64_t> FdScan::match_socket(std::string_view link, const char* name) {
    char* end = nullptr;
    const std::uint64_t socket_inode = std::strtoull(link.data() + 8, &end, 10);
    if (const auto known = socket_ns_.find(socket_inode); known != socket_ns_.end()) {
        const auto it = sockets_.find(known->second);
        return it == sockets_.end() ? std::nullopt : std::optional(it->second);
    }
    const auto copy = copy_fd(name);
    return copy ? socket_namespace(socket_inode, copy.get()) : std::nullopt;
}

bool FdScan::step(std::size_t budget) {
    if (!proc_)
        return true;
    if (sought_.empty() && sockets_.empty()) {
        finish();
        return true;
    }
    for (std::size_t n = 0; n < budget; ++n) {
        if (!fds_ && !next_process()) {
            finish();
            return true;
        }
        const dirent* d = ::readdir(fds_.get());
        if (d == nullptr) {
            fds_.reset(); // this process is done (or exited meanwhile)
            continue;
        }
        ++looked_at_;
        if (d->d_name[0] == '.')
            continue;
        bool socket = false;
        const auto inode = copies_ ? match_copy(d->d_name, socket) : match(d->d_name, socket);
        if (!inode)
            continue;
        if (!comm_read_) {
            comm_read_ = true;
            comm_ = process_comm(proc_dir_, pid_);
        }
        pass_[*inode].push_back(FdHolder{pid_, comm_, std::atoi(d->d_name), socket});
    }
    return false;
}

} // namespace nsidd::netns
