// SPDX-License-Identifier: LGPL-2.1-or-later
#include "util/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/unique_fd.hpp"

namespace nsidd {

Result<std::string> read_file(const std::string& path, std::size_t max_bytes) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd)
        return fail_errno();
    std::string out;
    char buf[65536];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail_errno();
        if (n == 0)
            return out;
        if (out.size() + static_cast<std::size_t>(n) > max_bytes)
            return fail(Errc::TooLarge);
        out.append(buf, static_cast<std::size_t>(n));
    }
}

Result<void> write_file_atomic(const std::string& path, std::string_view text, mode_t mode) {
    const std::string tmp = path + ".tmp";
    // Whatever lies at PATH.tmp (a stale file, a planted symlink) is removed, never followed.
    ::unlink(tmp.c_str());
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!fd || ::fchmod(fd.get(), mode) < 0)
        return fail_errno();
    for (std::size_t off = 0; off < text.size();) {
        const ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            const int e = n < 0 ? errno : ENOSPC;
            ::unlink(tmp.c_str());
            return fail_errno(e);
        }
        off += static_cast<std::size_t>(n);
    }
    fd.reset();
    if (::rename(tmp.c_str(), path.c_str()) < 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        return fail_errno(e);
    }
    return {};
}

std::string read_link(const std::string& path) {
    char target[256];
    const ssize_t len = ::readlink(path.c_str(), target, sizeof target);
    return len > 0 ? std::string(target, static_cast<std::size_t>(len)) : std::string();
}

} // namespace nsidd
