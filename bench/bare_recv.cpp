// SPDX-License-Identifier: LGPL-2.1-or-later
// The floor of a storm's cost: a loop that only receives RTNLGRP_NSID events (8 MiB buffer)
// and counts them. bench/storm.py runs it beside nsidd and `ip monitor nsid`; on SIGTERM it
// prints "NEW DEL LOST" (LOST: overruns) and exits.
#include <cerrno>
#include <csignal>
#include <cstdio>

#include <sys/socket.h>
#include <unistd.h>

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

namespace {

volatile std::sig_atomic_t stop = 0;

void on_term(int) {
    stop = 1;
}

} // namespace

int main() {
    struct sigaction sa {};
    sa.sa_handler = on_term; // no SA_RESTART: recv returns EINTR
    sigaction(SIGTERM, &sa, nullptr);
    const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    int group = RTNLGRP_NSID;
    int size = 8 << 20;
    sockaddr_nl addr{};
    addr.nl_family = AF_NETLINK;
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
        setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0) {
        std::perror("bare_recv");
        return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    static char buf[65536];
    unsigned long news = 0, dels = 0, lost = 0;
    while (!stop) {
        const ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got < 0) {
            lost += errno == ENOBUFS;
            continue;
        }
        unsigned len = static_cast<unsigned>(got);
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
            news += h->nlmsg_type == RTM_NEWNSID;
            dels += h->nlmsg_type == RTM_DELNSID;
        }
    }
    std::printf("%lu %lu %lu\n", news, dels, lost);
    return 0;
}
