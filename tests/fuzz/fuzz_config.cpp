// SPDX-License-Identifier: LGPL-2.1-or-later
// libFuzzer target: the configuration file. Any content must give settings or an error
// message, never a crash or an exception escaping.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <variant>

#include <sys/mman.h>
#include <unistd.h>

#include "daemon/options.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const int fd = ::memfd_create("nsidd-fuzz.conf", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (::write(fd, data, size) != static_cast<ssize_t>(size)) {
        ::close(fd);
        return 0;
    }
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    std::string flag = "--config";
    std::string prog = "nsidd";
    char* argv[] = {prog.data(), flag.data(), path.data(), nullptr};
    auto r = nsidd::daemon::reload_options(3, argv);
    (void)std::holds_alternative<nsidd::daemon::Options>(r);
    ::close(fd);
    return 0;
}
