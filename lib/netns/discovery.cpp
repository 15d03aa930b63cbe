// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/discovery.hpp"

#include "util/file.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>

namespace nsidd::netns {
namespace {

// _IOR(0xb7, 13, __u64); not in Debian 12's headers.
constexpr unsigned long kNsGetId = 0x8008b70d;

} // namespace

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

std::string process_comm(const std::string& proc_dir, pid_t pid) {
    auto comm = read_file(proc_dir + "/" + std::to_string(pid) + "/comm", 64);
    if (!comm)
        return {};
    while (!comm->empty() && comm->back() == '\n')
        comm->pop_back();
    return std::move(*comm);
}

} // namespace nsidd::netns
