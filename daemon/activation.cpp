// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/activation.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "netns/discovery.hpp"
#include "util/file.hpp"

namespace nsidd::daemon {

PassedSockets take_passed_sockets() {
    PassedSockets passed;
    char** names = nullptr;
    const int n = sd_listen_fds_with_names(1, &names);
    for (int i = 0; i < n; ++i) {
        const int fd = SD_LISTEN_FDS_START + i;
        const std::string name = names && names[i] ? names[i] : "";
        if (sd_is_socket(fd, AF_NETLINK, SOCK_RAW, -1) > 0 &&
            (name == "netlink" || name.empty() || name == "unknown"))
            passed.netlink.emplace(fd);
        else if (sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) > 0)
            passed.varlink.emplace(fd);
        else {
            spdlog::warn("Ignoring passed file descriptor {} ({}): not a socket nsidd uses", fd,
                         name);
            if (::fcntl(fd, F_GETFD) >= 0)
                ::close(fd);
        }
    }
    if (names) {
        for (int i = 0; i < n; ++i)
            std::free(names[i]);
        std::free(names);
    }
    return passed;
}

KernelFeatures probe_kernel_features() {
    KernelFeatures f;
    // docs/kernel.md, "Dumps are cut": Linux >= 6.10 answers an nsid dump with one skb only.
    utsname u{};
    int major = 0, minor = 0;
    f.dump_truncation = ::uname(&u) < 0 || std::sscanf(u.release, "%d.%d", &major, &minor) != 2 ||
                        major > 6 || (major == 6 && minor >= 10);
    auto fd = netns::open_namespace("/proc/self/ns/net");
    f.ns_get_id = fd && netns::namespace_cookie(fd->get()).has_value();
    return f;
}

std::optional<std::uint64_t> read_netns_limit() {
    const auto text = read_file("/proc/sys/user/max_net_namespaces", 64);
    if (!text)
        return std::nullopt;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(text->c_str(), &end, 10);
    if (end == text->c_str())
        return std::nullopt;
    return v;
}

} // namespace nsidd::daemon
