// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/fd_scan.hpp"

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string_view>

#include <dirent.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "netns/discovery.hpp"
#include "netns/mountinfo.hpp"
#include "util/file.hpp"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71 // Linux 5.14
#endif
#ifndef SIOCGSKNS
#define SIOCGSKNS 0x894C // Linux 4.9: an nsfs fd of the socket's network namespace
#endif

namespace nsidd::netns {
namespace {

// Namespaces identified in one search: each travels as an fd (SCM_RIGHTS holds 253 a message).
constexpr std::size_t kMaxIdentified = 253;
// The decoded text's bounds: a host's worth of holders, not a memory bomb.
constexpr std::size_t kMaxFoundText = 32u << 20;

using Dir = std::unique_ptr<DIR, int (*)(DIR*)>;

std::optional<std::uint64_t> number(std::string_view s) {
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || s.empty())
        return std::nullopt;
    return v;
}

// "socket:[INODE]" -> INODE.
std::optional<std::uint64_t> socket_inode(std::string_view link) {
    if (!link.starts_with("socket:[") || !link.ends_with(']'))
        return std::nullopt;
    return number(link.substr(8, link.size() - 9));
}

// The readlink of fd `name` under the open directory `dirfd` ("" when unreadable).
std::string link_of(int dirfd, const char* name) {
    char target[256];
    const ssize_t len = ::readlinkat(dirfd, name, target, sizeof target);
    return len > 0 ? std::string(target, static_cast<std::size_t>(len)) : std::string();
}

} // namespace

std::optional<FdInfo> read_fdinfo(int dirfd, const char* name) {
    UniqueFd fd(::openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd)
        return std::nullopt;
    char buf[512]; // pos, flags, mnt_id and ino come first
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n <= 0)
        return std::nullopt;
    const std::string_view text(buf, static_cast<std::size_t>(n));
    FdInfo info;
    bool mnt = false, ino = false;
    for (std::size_t at = 0; at < text.size();) {
        auto end = text.find('\n', at);
        if (end == std::string_view::npos)
            break; // cut: only whole lines count
        const auto line = text.substr(at, end - at);
        at = end + 1;
        const auto tab = line.find(":\t");
        if (tab == std::string_view::npos)
            continue;
        const auto key = line.substr(0, tab);
        const auto value = number(line.substr(tab + 2));
        if (key == "mnt_id" && value)
            mnt = true, info.mnt_id = *value;
        else if (key == "ino" && value)
            ino = true, info.inode = *value;
    }
    if (!mnt || !ino)
        return std::nullopt;
    return info;
}

bool still_holds(const std::string& proc_dir, int pid, int fd, std::uint64_t inode) {
    const auto dir = proc_dir + "/" + std::to_string(pid);
    UniqueFd fds(::open((dir + "/fd").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    const auto name = std::to_string(fd);
    const auto link = fds ? link_of(fds.get(), name.c_str()) : std::string();
    if (const auto linked = net_root_inode(link))
        return *linked == inode;
    if (link != "/")
        return false;
    UniqueFd info(::open((dir + "/fdinfo").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    const auto got = info ? read_fdinfo(info.get(), name.c_str()) : std::nullopt;
    return got && got->inode == inode;
}

std::optional<FdInfo> own_fdinfo(const std::string& proc_dir, int fd) {
    UniqueFd dir(::open((proc_dir + "/self/fdinfo").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return dir ? read_fdinfo(dir.get(), std::to_string(fd).c_str()) : std::nullopt;
}

struct FdScan::Process {
    pid_t pid = 0;
    std::string dir; // proc_dir/PID
    Dir fds{nullptr, ::closedir};
    UniqueFd fdinfo;    // proc_dir/PID/fdinfo
    bool linked = true; // its fd links can be read (ours, or CAP_DAC_READ_SEARCH)
    std::optional<std::string> comm;
    std::optional<uid_t> uid;
    UniqueFd pidfd;
    bool pidfd_tried = false;
};

FdScan::FdScan(std::string proc_dir) : proc_dir_(std::move(proc_dir)) {
    // Which mounts nsfs and sockfs files live on, from fds of our own: fdinfo then tells an
    // nsfs or socket fd of a process whose fd links nsidd may not read.
    if (UniqueFd self(::open((proc_dir_ + "/self/ns/net").c_str(), O_RDONLY | O_CLOEXEC)); self) {
        nsfs_mnt_ = own_fdinfo(proc_dir_, self.get()).value_or(FdInfo{}).mnt_id;
        if (struct stat st{}; ::fstat(self.get(), &st) == 0)
            nsfs_dev_ = st.st_dev;
    }
    if (UniqueFd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)); sock)
        sockfs_mnt_ = own_fdinfo(proc_dir_, sock.get()).value_or(FdInfo{}).mnt_id;
}

FdFound FdScan::run(const FdSearch& search, const std::atomic<bool>& stop) {
    FdFound found;
    socket_ns_.clear();
    cookie_inode_.clear();
    identified_.clear();
    Dir proc(::opendir(proc_dir_.c_str()), ::closedir);
    if (!proc)
        return found;
    while (const dirent* d = ::readdir(proc.get())) {
        if (stop.load(std::memory_order_relaxed))
            return found;
        ++found.looked_at;
        const auto pid = number(d->d_name);
        if (!pid || *pid == 0 || *pid > INT32_MAX)
            continue;
        // Not the search's own fds (the namespaces it identifies), nor nsidd's: it holds a
        // namespace only for a moment, to ask about it.
        if (static_cast<pid_t>(*pid) == ::getpid() || static_cast<pid_t>(*pid) == ::getppid())
            continue;
        Process p;
        p.pid = static_cast<pid_t>(*pid);
        p.dir = proc_dir_ + "/" + d->d_name;
        if (is_own_search(p))
            continue;
        p.fds.reset(::opendir((p.dir + "/fd").c_str()));
        // Not ours, and no CAP_DAC_READ_SEARCH: its fd numbers from fdinfo (ptrace access).
        p.linked = p.fds != nullptr;
        if (!p.fds && errno == EACCES)
            p.fds.reset(::opendir((p.dir + "/fdinfo").c_str()));
        if (!p.fds)
            continue; // gone, or a kernel thread
        p.fdinfo.reset(::open((p.dir + "/fdinfo").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        scan_process(p, search, found);
    }
    found.complete = true;
    return found;
}

void FdScan::scan_process(Process& p, const FdSearch& search, FdFound& found) {
    const int dirfd = ::dirfd(p.fds.get());
    while (const dirent* d = ::readdir(p.fds.get())) {
        ++found.looked_at;
        if (d->d_name[0] == '.')
            continue;
        if (p.linked) {
            const auto link = link_of(dirfd, d->d_name);
            if (link.empty())
                continue;
            if (const auto inode = net_root_inode(link)) // opened via /proc/PID/ns/net
                on_nsfs(p, d->d_name, *inode, Seen::Link, search, found);
            else if (const auto sock = socket_inode(link))
                on_socket(p, d->d_name, *sock, search, found);
            else if (link == "/" && p.fdinfo)
                // The root of a mount, or an nsfs file opened through a bind mount since
                // unmounted (`ip netns del` while a process keeps the file open).
                if (const auto info = read_fdinfo(p.fdinfo.get(), d->d_name))
                    on_nsfs(p, d->d_name, info->inode, Seen::DetachedRoot, search, found);
            continue;
        }
        const auto info = p.fdinfo ? read_fdinfo(p.fdinfo.get(), d->d_name) : std::nullopt;
        if (!info)
            continue;
        if (info->mnt_id == sockfs_mnt_ && sockfs_mnt_ != 0)
            on_socket(p, d->d_name, info->inode, search, found);
        else if ((info->mnt_id == nsfs_mnt_ && nsfs_mnt_ != 0) || search.inodes.count(info->inode))
            on_nsfs(p, d->d_name, info->inode, Seen::FdInfo, search, found);
    }
}

void FdScan::on_nsfs(Process& p, const char* fd, std::uint64_t inode, Seen seen,
                     const FdSearch& search, FdFound& found) {
    if (search.inodes.count(inode) || identified_.count(inode)) {
        add_holder(p, fd, inode, false, found);
        return;
    }
    // Only a link can be opened (nsidd may open what it may read); known namespaces need no
    // fd.
    if (!(search.identify || search.unknown_nsfs) || seen == Seen::FdInfo ||
        search.known_inodes.count(inode) ||
        found.identified.size() + found.unknown.size() >= kMaxIdentified)
        return;
    // O_PATH: no file system is asked to open anything. The fd may have been replaced since the
    // readlink: it is used only if it is that nsfs file now, by our own fdinfo (its mount is
    // nsfs's) or, for a bind mount since unmounted, by a statx that asks no file system
    // (AT_STATX_DONT_SYNC: nsfs's device and that inode).
    const auto path = p.dir + "/fd/" + fd;
    UniqueFd handle(::open(path.c_str(), O_PATH | O_CLOEXEC));
    if (!handle)
        return;
    if (seen == Seen::Link) {
        const auto info = own_fdinfo(proc_dir_, handle.get());
        if (!info || info->mnt_id != nsfs_mnt_ || info->inode != inode)
            return;
    } else {
        struct statx stx {};
        if (::statx(handle.get(), "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_INO, &stx) != 0 ||
            ::makedev(stx.stx_dev_major, stx.stx_dev_minor) != nsfs_dev_ || stx.stx_ino != inode)
            return;
    }
    // Reopened through our own fd: an nsfs open, whatever the process does meanwhile.
    UniqueFd ns(::open((proc_dir_ + "/self/fd/" + std::to_string(handle.get())).c_str(),
                       O_RDONLY | O_CLOEXEC));
    if (!ns || ::ioctl(ns.get(), NS_GET_NSTYPE) != CLONE_NEWNET)
        return; // another kind of namespace
    const auto cookie = namespace_cookie(ns.get());
    identified_.insert(inode);
    if (search.identify)
        found.identified.push_back(HeldNamespace{inode, cookie ? *cookie : 0, std::move(ns)});
    else // closed at once: nothing is kept open on it
        found.unknown.emplace_back(inode, cookie ? *cookie : 0);
    add_holder(p, fd, inode, false, found);
}

void FdScan::on_socket(Process& p, const char* fd, std::uint64_t inode, const FdSearch& search,
                       FdFound& found) {
    if (search.sockets.empty() && !search.identify)
        return;
    const auto cookie = socket_cookie(p, fd, inode, search, found);
    if (!cookie)
        return;
    if (const auto it = search.sockets.find(*cookie); it != search.sockets.end())
        add_holder(p, fd, it->second, true, found);
    else if (const auto id = cookie_inode_.find(*cookie); id != cookie_inode_.end())
        add_holder(p, fd, id->second, true, found);
}

// The cookie of the namespace socket `inode` (fd `fd` of p) was made in; each socket asked
// once per search. A socket of a namespace no known one is gets that namespace identified.
std::optional<std::uint64_t> FdScan::socket_cookie(Process& p, const char* fd, std::uint64_t inode,
                                                   const FdSearch& search, FdFound& found) {
    if (const auto known = socket_ns_.find(inode); known != socket_ns_.end())
        return known->second;
    if (!copying_)
        return std::nullopt;
    if (!p.uid) {
        struct stat st {};
        p.uid = ::stat(p.dir.c_str(), &st) == 0 ? st.st_uid : static_cast<uid_t>(-1);
    }
    if (search.no_copies_from.count(*p.uid))
        return std::nullopt;
    if (!p.pidfd && !p.pidfd_tried) {
        p.pidfd_tried = true;
        p.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, p.pid, 0)));
    }
    if (!p.pidfd)
        return std::nullopt;
    UniqueFd copy(static_cast<int>(::syscall(SYS_pidfd_getfd, p.pidfd.get(), std::atoi(fd), 0)));
    if (!copy) {
        if (errno == EPERM || errno == ENOSYS)
            ++found.copies_denied; // a seccomp filter (a container's), or no ptrace access
        return std::nullopt;
    }
    // The process may have put another file under that number since the look: then the copy
    // is that file, whose close could wait on whoever serves it (FUSE's FLUSH). It is kept open
    // and nothing more is copied; the search process ends at its deadline.
    const auto own = proc_dir_ + "/self/fd/" + std::to_string(copy.get());
    if (socket_inode(read_link(own)) != inode) {
        (void)copy.release();
        copying_ = false;
        found.swapped.push_back(Swapped{p.pid, *p.uid, std::atoi(fd)});
        return std::nullopt;
    }
    std::uint64_t cookie = 0;
    socklen_t size = sizeof cookie;
    if (::getsockopt(copy.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &size) < 0)
        return std::nullopt;
    socket_ns_.emplace(inode, cookie);
    if (search.identify && !search.sockets.count(cookie) && !search.known_cookies.count(cookie) &&
        !cookie_inode_.count(cookie) && found.identified.size() < kMaxIdentified) {
        UniqueFd ns(::ioctl(copy.get(), SIOCGSKNS));
        struct stat st {};
        if (ns && ::fstat(ns.get(), &st) == 0 && !search.known_inodes.count(st.st_ino)) {
            cookie_inode_.emplace(cookie, st.st_ino);
            identified_.insert(st.st_ino);
            found.identified.push_back(HeldNamespace{st.st_ino, cookie, std::move(ns)});
        }
    }
    return cookie;
}

bool FdScan::is_own_search(Process& p) {
    const auto comm = process_comm(proc_dir_, p.pid);
    if (comm != kSearchComm)
        return false;
    struct stat st {};
    return ::stat(p.dir.c_str(), &st) == 0 && st.st_uid == ::geteuid();
}

void FdScan::add_holder(Process& p, const char* fd, std::uint64_t inode, bool socket,
                        FdFound& found) {
    if (!p.comm)
        p.comm = process_comm(proc_dir_, p.pid);
    found.holders[inode].push_back(FdHolder{p.pid, *p.comm, std::atoi(fd), socket});
}

// Text: "L LOOKED DENIED COMPLETE", then "H INODE PID FD SOCKET COMM", "I INODE COOKIE" (one
// per fd passed, in order) and "S PID UID FD" lines. COMM is last on its line, newline-free.
std::string encode_found(const FdFound& found) {
    std::string out = "L " + std::to_string(found.looked_at) + " " +
                      std::to_string(found.copies_denied) + " " + (found.complete ? "1" : "0") +
                      "\n";
    for (const auto& [inode, holders] : found.holders)
        for (const auto& h : holders) {
            std::string comm = h.comm;
            for (auto& c : comm)
                if (c == '\n')
                    c = '?';
            out += "H " + std::to_string(inode) + " " + std::to_string(h.pid) + " " +
                   std::to_string(h.fd) + " " + (h.socket ? "1" : "0") + " " + comm + "\n";
        }
    for (const auto& n : found.identified)
        out += "I " + std::to_string(n.inode) + " " + std::to_string(n.cookie) + "\n";
    for (const auto& [inode, cookie] : found.unknown)
        out += "U " + std::to_string(inode) + " " + std::to_string(cookie) + "\n";
    for (const auto& s : found.swapped)
        out += "S " + std::to_string(s.pid) + " " + std::to_string(s.uid) + " " +
               std::to_string(s.fd) + "\n";
    return out;
}

namespace {

// The `n` numbers after a line's tag ("X "); `rest`, when given, takes what follows the n-th
// and a space (an H line's comm), else the line must end there.
bool fields(std::string_view line, std::size_t n, std::uint64_t* out,
            std::string_view* rest = nullptr) {
    if (line.size() < 2 || line[1] != ' ')
        return false;
    std::size_t pos = 2;
    for (std::size_t i = 0; i < n; ++i) {
        const auto space = line.find(' ', pos);
        const bool last = i + 1 == n;
        if ((space == std::string_view::npos) != (last && rest == nullptr))
            return false;
        const auto v = number(line.substr(
            pos, space == std::string_view::npos ? std::string_view::npos : space - pos));
        if (!v)
            return false;
        out[i] = *v;
        pos = space == std::string_view::npos ? line.size() : space + 1;
    }
    if (rest != nullptr)
        *rest = line.substr(pos);
    return true;
}

} // namespace

std::optional<FdFound> decode_found(std::string_view text, std::vector<UniqueFd> fds) {
    if (text.size() > kMaxFoundText || !text.starts_with("L "))
        return std::nullopt;
    FdFound found;
    std::size_t next_fd = 0;
    for (std::size_t at = 0; at < text.size();) {
        const auto end = text.find('\n', at);
        if (end == std::string_view::npos)
            return std::nullopt; // cut
        const auto line = text.substr(at, end - at);
        at = end + 1;
        std::uint64_t f[4] = {};
        std::string_view comm;
        switch (line.empty() ? '\0' : line[0]) {
        case 'L':
            if (!fields(line, 3, f) || f[2] > 1)
                return std::nullopt;
            found.looked_at = f[0], found.copies_denied = f[1], found.complete = f[2] == 1;
            break;
        case 'H':
            if (!fields(line, 4, f, &comm) || f[1] > INT32_MAX || f[2] > INT32_MAX || f[3] > 1)
                return std::nullopt;
            found.holders[f[0]].push_back(FdHolder{static_cast<pid_t>(f[1]), std::string(comm),
                                                   static_cast<int>(f[2]), f[3] == 1});
            break;
        case 'I':
            if (!fields(line, 2, f) || next_fd >= fds.size())
                return std::nullopt;
            found.identified.push_back(HeldNamespace{f[0], f[1], std::move(fds[next_fd++])});
            break;
        case 'U':
            if (!fields(line, 2, f) || found.unknown.size() >= kMaxIdentified)
                return std::nullopt;
            found.unknown.emplace_back(f[0], f[1]);
            break;
        case 'S':
            if (!fields(line, 3, f) || f[0] > INT32_MAX || f[1] > UINT32_MAX || f[2] > INT32_MAX)
                return std::nullopt;
            found.swapped.push_back(Swapped{static_cast<pid_t>(f[0]), static_cast<uid_t>(f[1]),
                                            static_cast<int>(f[2])});
            break;
        default:
            return std::nullopt;
        }
    }
    if (next_fd != fds.size())
        return std::nullopt;
    return found;
}

} // namespace nsidd::netns
