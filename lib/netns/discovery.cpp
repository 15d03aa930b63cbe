// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/discovery.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <memory>

#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

namespace nsidd::netns {
namespace {

// _IOR(0xb7, 13, __u64); not in Debian 12's headers.
constexpr unsigned long kNsGetId = 0x8008b70d;

using Dir = std::unique_ptr<DIR, FnDeleter<closedir>>;

std::optional<std::uint64_t> inode_of(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) < 0)
        return std::nullopt;
    return static_cast<std::uint64_t>(st.st_ino);
}

} // namespace

std::vector<Found> scan(const Roots& roots) {
    std::map<std::uint64_t, Found> by_inode;
    // The entry for the namespace at `path`, by inode; nullptr when it cannot be stat'ed.
    auto found_at = [&by_inode](const std::string& path) -> Found* {
        const auto ino = inode_of(path);
        if (!ino)
            return nullptr;
        auto& f = by_inode[*ino];
        if (f.path.empty()) {
            f.path = path;
            f.inode = *ino;
        }
        return &f;
    };
    if (Dir dir{::opendir(roots.netns_dir.c_str())}) {
        while (const dirent* d = ::readdir(dir.get())) {
            const std::string name = d->d_name;
            if (name == "." || name == "..")
                continue;
            if (Found* f = found_at(roots.netns_dir + "/" + name))
                f->names.push_back(name);
        }
    }
    if (Dir dir{::opendir(roots.proc_dir.c_str())}) {
        while (const dirent* d = ::readdir(dir.get())) {
            char* end = nullptr;
            const long pid = std::strtol(d->d_name, &end, 10);
            if (pid <= 0 || *end != '\0')
                continue;
            Found* f = found_at(roots.proc_dir + "/" + d->d_name + "/ns/net");
            if (f != nullptr && !f->pid)
                f->pid = static_cast<pid_t>(pid);
        }
    }
    std::vector<Found> out;
    out.reserve(by_inode.size());
    for (auto& [ino, f] : by_inode) {
        std::sort(f.names.begin(), f.names.end());
        out.push_back(std::move(f));
    }
    return out;
}

Result<UniqueFd> open_namespace(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return fail_errno();
    return fd;
}

Result<std::uint64_t> namespace_cookie(int fd) {
    std::uint64_t id = 0;
    if (::ioctl(fd, kNsGetId, &id) < 0)
        return fail_errno();
    return id;
}

} // namespace nsidd::netns
