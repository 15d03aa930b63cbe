// SPDX-License-Identifier: LGPL-2.1-or-later
// The kernel's share of resolving identities: opens every namespace mounted under DIR and asks
// the kernel its nsid in this namespace (RTM_GETNSID by NETNSA_FD), once each, one question at a
// time. The NEW event names only the id, never the namespace (docs/kernel.md), so a program
// that tells which namespace each new id is must ask this at least once per namespace, and the
// kernel answers it by walking the id table (peernet2id). bench/storm.py runs it after each
// creation phase: bare loop + this is the floor of a mirror that resolves identity.
// Prints "NAMESPACES ASSIGNED CPU_SECONDS" (its own user + system time, from getrusage).
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/net_namespace.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

namespace {

// The nsid of the namespace `fd` is, or -1 (none assigned, or an error).
int ask(int sock, int fd, std::uint32_t seq) {
    struct {
        nlmsghdr h;
        rtgenmsg g;
        char pad[3];
        nlattr a;
        std::int32_t value;
    } req{};
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = RTM_GETNSID;
    req.h.nlmsg_flags = NLM_F_REQUEST;
    req.h.nlmsg_seq = seq;
    req.g.rtgen_family = AF_UNSPEC;
    req.a.nla_len = NLA_HDRLEN + sizeof(std::int32_t);
    req.a.nla_type = NETNSA_FD;
    req.value = fd;
    if (send(sock, &req, sizeof req, 0) < 0)
        return -1;
    alignas(nlmsghdr) static char buf[4096];
    const ssize_t got = recv(sock, buf, sizeof buf, 0);
    if (got <= 0)
        return -1;
    unsigned len = static_cast<unsigned>(got);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_type != RTM_NEWNSID)
            continue;
        auto alen = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(rtgenmsg)));
        auto* a = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(NLMSG_DATA(h)) +
                                            NLMSG_ALIGN(sizeof(rtgenmsg)));
        for (; alen >= static_cast<int>(sizeof(nlattr)) && a->nla_len >= sizeof(nlattr) &&
               a->nla_len <= alen;
             alen -= NLA_ALIGN(a->nla_len),
             a = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(a) + NLA_ALIGN(a->nla_len)))
            if ((a->nla_type & NLA_TYPE_MASK) == NETNSA_NSID)
                return *reinterpret_cast<std::int32_t*>(reinterpret_cast<char*>(a) + NLA_HDRLEN);
    }
    return -1;
}

} // namespace

int main(int argc, char** argv) {
    const char* dir_path = argc > 1 ? argv[1] : "/run/netns";
    const int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    sockaddr_nl addr{};
    addr.nl_family = AF_NETLINK;
    DIR* dir = opendir(dir_path);
    if (sock < 0 || bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
        dir == nullptr) {
        std::perror("ask_ids");
        return 1;
    }
    unsigned long namespaces = 0, assigned = 0;
    std::uint32_t seq = 0;
    while (const dirent* d = readdir(dir)) {
        if (d->d_name[0] == '.')
            continue;
        const int fd = openat(dirfd(dir), d->d_name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ++namespaces;
        assigned += ask(sock, fd, ++seq) >= 0;
        close(fd);
    }
    closedir(dir);
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    const double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                       static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    std::printf("%lu %lu %.6f\n", namespaces, assigned, cpu);
    return 0;
}
