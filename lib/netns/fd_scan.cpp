// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/fd_scan.hpp"

#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string_view>

#include <fcntl.h>
#include <unistd.h>

#include "netns/mountinfo.hpp"
#include "util/file.hpp"

namespace nsidd::netns {

void FdScan::start(std::unordered_set<std::uint64_t> inodes) {
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

bool FdScan::step(std::size_t budget) {
    if (!proc_)
        return true;
    if (sought_.empty()) {
        finish();
        return true;
    }
    char target[64];
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
        // "net:[INODE]" is 5 + at most 20 + 1 bytes; anything longer is another kind of file.
        const ssize_t len = ::readlinkat(::dirfd(fds_.get()), d->d_name, target, sizeof target);
        if (len <= 0 || static_cast<std::size_t>(len) >= sizeof target)
            continue;
        const auto inode = net_root_inode(std::string_view(target, static_cast<std::size_t>(len)));
        if (!inode || !sought_.count(*inode))
            continue;
        if (!comm_read_) {
            comm_read_ = true;
            comm_.clear();
            if (auto comm = read_file(proc_dir_ + "/" + std::to_string(pid_) + "/comm", 64)) {
                comm_ = std::move(*comm);
                while (!comm_.empty() && comm_.back() == '\n')
                    comm_.pop_back();
            }
        }
        pass_[*inode].push_back(FdHolder{pid_, comm_, std::atoi(d->d_name)});
    }
    return false;
}

} // namespace nsidd::netns
