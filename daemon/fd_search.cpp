// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/fd_search.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <charconv>
#include <cstring>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "util/file.hpp"
#include "util/time.hpp"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace nsidd::daemon {
namespace {

// The findings' text is a host's worth of holders: past this, something is wrong.
constexpr std::size_t kMaxText = 32u << 20;
constexpr std::size_t kMaxFds = 253; // SCM_MAX_FD

bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

// The CPU time (user and system) process `pid` has used so far; 0 when unknown.
std::uint64_t process_cpu_usec(pid_t pid) {
    const auto stat = read_file("/proc/" + std::to_string(pid) + "/stat", 4096);
    if (!stat)
        return 0;
    // Fields after "(comm) ": state is field 3; utime and stime are 14 and 15.
    std::string_view rest(*stat);
    rest.remove_prefix(std::min(rest.rfind(')') + 2, rest.size()));
    std::uint64_t ticks = 0;
    for (int i = 3; i <= 15 && !rest.empty(); ++i) {
        const auto end = std::min(rest.find(' '), rest.size());
        if (i == 14 || i == 15) {
            std::uint64_t v = 0;
            std::from_chars(rest.data(), rest.data() + end, v);
            ticks += v;
        }
        rest.remove_prefix(std::min(end + 1, rest.size()));
    }
    return ticks * 1'000'000 / static_cast<std::uint64_t>(::sysconf(_SC_CLK_TCK));
}

// Reaps `pidfd`'s process if it has ended; true when it has.
bool reaped(int pidfd) {
    siginfo_t info{};
    return ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info,
                    WEXITED | WNOHANG) == 0 &&
           info.si_pid != 0;
}

} // namespace

FdSearchRunner::FdSearchRunner(sd_event* event, std::string proc_dir, Done done, GivenUp given_up)
    : event_(event), proc_dir_(std::move(proc_dir)), done_(std::move(done)),
      given_up_(std::move(given_up)) {}

FdSearchRunner::~FdSearchRunner() {
    // Nothing waits for a search at stop: its process is killed, and reaped if it is gone.
    end_child();
    for (auto& e : ending_)
        reaped(e.pidfd.get());
}

Result<void> FdSearchRunner::start(const netns::FdSearch& search) {
    if (busy())
        return fail_errno(EBUSY);
    if (ending_.size() >= kMaxEnding)
        return fail_errno(EAGAIN);
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
        return fail_errno();
    UniqueFd ours(pair[0]), theirs(pair[1]);
    const pid_t pid = ::fork();
    if (pid < 0)
        return fail_errno();
    if (pid == 0) {
        ours.reset();
        run_child(theirs.release(), search);
    }
    theirs.reset();
    child_ = pid;
    started_usec_ = monotonic_usec();
    pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    sock_ = std::move(ours);
    ::fcntl(sock_.get(), F_SETFL, O_NONBLOCK);
    text_.clear();
    fds_.clear();
    sd_event_source* io = nullptr;
    sd_event_source* timer = nullptr;
    if (const int r = sd_event_add_io(event_, &io, sock_.get(), EPOLLIN, on_result, this); r < 0) {
        end_child();
        return fail_errno(-r);
    }
    result_io_.reset(io);
    if (const int r = sd_event_add_time_relative(event_, &timer, CLOCK_MONOTONIC, kBudgetUsec, 0,
                                                 on_deadline, this);
        r < 0) {
        end_child();
        return fail_errno(-r);
    }
    deadline_.reset(timer);
    return {};
}

void FdSearchRunner::run_child(int sock, const netns::FdSearch& search) {
    // Only the pipe back is kept: the daemon's sockets and listeners must not outlive it in a
    // process that may be stuck in a close.
    if (sock > 3)
        ::syscall(SYS_close_range, 3u, static_cast<unsigned>(sock - 1), 0u);
    ::syscall(SYS_close_range, static_cast<unsigned>(sock + 1), ~0u, 0u);
    // Named so that the searches of another nsidd of this user pass over it (the namespaces it
    // identifies are open in it for a moment: FdScan skips it).
    ::prctl(PR_SET_NAME, netns::kSearchComm);
    netns::FdScan scan(proc_dir_);
    const std::atomic<bool> stop{false}; // the daemon ends this process at the deadline
    auto found = scan.run(search, stop);
    // First one byte carrying the identified namespaces' fds, then the text.
    std::vector<int> fds;
    for (const auto& n : found.identified)
        fds.push_back(n.fd.get());
    char marker = 'F';
    iovec iov{&marker, 1};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    if (!fds.empty()) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    const bool sent =
        ::sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 && write_all(sock, netns::encode_found(found));
    ::close(sock); // the daemon has it all before this process closes anything else
    ::_exit(sent ? 0 : 1);
}

int FdSearchRunner::on_result(sd_event_source*, int, uint32_t, void* userdata) noexcept {
    auto* self = static_cast<FdSearchRunner*>(userdata);
    if (!self->read_result())
        self->end_child();
    return 0;
}

bool FdSearchRunner::read_result() {
    for (;;) {
        char buf[65536];
        iovec iov{buf, sizeof buf};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        const ssize_t n = ::recvmsg(sock_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return true;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); n > 0 && c != nullptr; c = CMSG_NXTHDR(&msg, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                const auto count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (std::size_t i = 0; i < count; ++i) {
                    int fd = -1;
                    std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                    fds_.emplace_back(fd);
                }
            }
        if (n > 0) {
            text_.append(buf, static_cast<std::size_t>(n));
            if (text_.size() <= kMaxText)
                continue;
        }
        // The end: the whole text, or an error. Its process is done: what it cost.
        cost_ = {monotonic_usec() - started_usec_, process_cpu_usec(child_)};
        auto found = n == 0 && text_.starts_with('F')
                         ? netns::decode_found(std::string_view(text_).substr(1), std::move(fds_))
                         : std::nullopt;
        text_ = std::string();
        fds_.clear();
        end_child();
        if (found)
            done_(std::move(*found));
        else
            given_up_("its findings were cut or malformed");
        return true;
    }
}

int FdSearchRunner::on_deadline(sd_event_source*, uint64_t, void* userdata) noexcept {
    auto* self = static_cast<FdSearchRunner*>(userdata);
    self->end_child();
    self->given_up_("it overran its time");
    return 0;
}

void FdSearchRunner::end_child() {
    result_io_.reset();
    deadline_.reset();
    sock_.reset();
    if (child_ <= 0)
        return;
    const pid_t pid = std::exchange(child_, 0);
    // Done, or given up: killed either way (a close that lingers ends with it).
    if (pidfd_) {
        ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
        if (reaped(pidfd_.get())) {
            pidfd_.reset();
            return;
        }
    } else {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, WNOHANG);
        return;
    }
    // Still ending (a close nothing interrupts): reaped when its pidfd says it ended.
    auto& e = ending_.emplace_back();
    e.owner = this;
    e.pid = pid;
    e.pidfd = std::move(pidfd_);
    e.self = std::prev(ending_.end());
    sd_event_source* s = nullptr;
    if (sd_event_add_io(event_, &s, e.pidfd.get(), EPOLLIN, on_ended, &e) >= 0)
        e.io.reset(s);
}

int FdSearchRunner::on_ended(sd_event_source*, int, uint32_t, void* userdata) noexcept {
    auto* e = static_cast<Ending*>(userdata);
    reaped(e->pidfd.get()); // readable: it has ended
    e->owner->ending_.erase(e->self);
    return 0;
}

} // namespace nsidd::daemon
