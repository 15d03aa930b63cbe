// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/fd_scan.hpp"

#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string_view>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "netns/discovery.hpp"
#include "netns/mountinfo.hpp"
#include "util/file.hpp"

namespace nsidd::netns {

void FdScan::start(std::unordered_set<std::uint64_t> inodes) {
    if (!nsfs_dev_) {
        struct stat st {};
        if (::stat((proc_dir_ + "/self/ns/net").c_str(), &st) == 0)
            nsfs_dev_ = st.st_dev;
    }
    sought_ = std::move(inodes);
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
        fds_.reset(::opendir((proc_dir_ + "/" + d->d_name + "/fd").c_str()));
        if (!fds_)
            continue; // gone, or a kernel thread
        pid_ = static_cast<pid_t>(pid);
        comm_read_ = false;
        return true;
    }
}

void FdScan::finish() {
    fds_.reset();
    proc_.reset();
    found_ = std::move(pass_);
    pass_.clear();
}

// The nsfs inode sought that fd `name` of the current process is, if it is one. An fd opened
// through /proc/PID/ns/net reads back as "net:[INODE]"; one opened through a bind mount reads
// back as that mount's path (or "/" once it is unmounted), so a path is stat'ed (through the
// fd's magic link, with AT_STATX_DONT_SYNC: cached attributes, never a round trip to a network
// file system) and matched by the nsfs device and inode. Sockets, pipes and anonymous inodes
// ("socket:[...]") are no namespace: the readlink alone rules them out.
std::optional<std::uint64_t> FdScan::match(const char* name) {
    char target[64];
    const ssize_t len = ::readlinkat(::dirfd(fds_.get()), name, target, sizeof target);
    if (len <= 0)
        return std::nullopt;
    const std::string_view link(target, static_cast<std::size_t>(len));
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

bool FdScan::step(std::size_t budget) {
    if (!proc_)
        return true;
    if (sought_.empty()) {
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
        const auto inode = match(d->d_name);
        if (!inode)
            continue;
        if (!comm_read_) {
            comm_read_ = true;
            comm_ = process_comm(proc_dir_, pid_);
        }
        pass_[*inode].push_back(FdHolder{pid_, comm_, std::atoi(d->d_name)});
    }
    return false;
}

} // namespace nsidd::netns
