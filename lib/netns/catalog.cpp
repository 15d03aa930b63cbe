// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/catalog.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include <fcntl.h>
#include <sys/stat.h>

#include "util/file.hpp"
#include "util/time.hpp"

namespace nsidd::netns {
namespace {

// Namespaces held open at once while their ids are asked: each open fd pins its namespace.
constexpr std::size_t kChunk = 128;
// GETs sent together by a refresh, between looks at its deadline.
constexpr std::size_t kRefreshChunk = 16;

// Undoes mountinfo's octal escapes (\040 for a space, \011, \012, \134).
std::string unescape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    const auto octal = [](char c) {
        return c >= '0' && c <= '7';
    };
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() && octal(s[i + 1]) && octal(s[i + 2]) &&
            octal(s[i + 3])) {
            out.push_back(static_cast<char>(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) |
                                            (s[i + 3] - '0')));
            i += 3;
            continue;
        }
        out.push_back(s[i]);
    }
    return out;
}

} // namespace

std::vector<NsfsMount> parse_nsfs_mounts(std::string_view text) {
    std::vector<NsfsMount> out;
    // Splits off the next space-separated field of `line` (empty when none is left).
    auto field = [](std::string_view& line) {
        while (!line.empty() && line.front() == ' ')
            line.remove_prefix(1);
        const auto sp = std::min(line.find(' '), line.size());
        const auto f = line.substr(0, sp);
        line.remove_prefix(sp);
        return f;
    };
    while (!text.empty()) {
        const auto eol = std::min(text.find('\n'), text.size());
        std::string_view line = text.substr(0, eol);
        text.remove_prefix(std::min(eol + 1, text.size()));
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
        field(line);
        field(line);
        field(line);
        const std::string_view root = field(line);
        const std::string_view mount_point = field(line);
        if (field(line).empty()) // options
            continue;
        std::string_view f;
        do
            f = field(line);
        while (!f.empty() && f != "-");
        if (f != "-" || field(line) != "nsfs")
            continue;
        constexpr std::string_view kPrefix = "net:[";
        if (root.size() <= kPrefix.size() + 1 || root.substr(0, kPrefix.size()) != kPrefix ||
            root.back() != ']')
            continue;
        const auto digits = root.substr(kPrefix.size(), root.size() - kPrefix.size() - 1);
        std::uint64_t inode = 0;
        bool ok = digits.size() <= 19;
        for (char c : digits)
            ok = ok && c >= '0' && c <= '9' && ((inode = inode * 10 + (c - '0')), true);
        if (!ok || inode == 0)
            continue;
        out.push_back(NsfsMount{inode, unescape(mount_point)});
    }
    return out;
}

Catalog::Catalog(Roots roots, netlink::RequestSocket& requests, bool assign_ids)
    : roots_(std::move(roots)), requests_(requests), assign_ids_(assign_ids) {
    if (auto self = meet(roots_.proc_dir + "/self/ns/net", std::nullopt))
        self_cookie_ = self->cookie;
}

std::optional<Catalog::Met> Catalog::meet(const std::string& path, std::optional<pid_t> pid) {
    auto fd = open_namespace(path);
    if (!fd)
        return std::nullopt; // gone, or not ours to open
    ++stats_.opened;
    struct stat st {};
    if (::fstat(fd->get(), &st) < 0)
        return std::nullopt;
    Met m{std::move(*fd), path, static_cast<std::uint64_t>(st.st_ino), 0, pid};
    if (auto cookie = namespace_cookie(m.fd.get())) {
        m.cookie = *cookie;
        cookies_ = true;
    } else {
        m.cookie = m.inode; // Linux < 6.18: the inode is the best key there is
    }
    return m;
}

void Catalog::set_nsid(Namespace& ns, std::optional<std::int32_t> nsid) {
    if (ns.nsid == nsid)
        return;
    ++ids_version_;
    if (ns.nsid) {
        if (auto it = by_nsid_.find(*ns.nsid); it != by_nsid_.end() && it->second == ns.cookie)
            by_nsid_.erase(it);
    }
    ns.nsid = nsid;
    if (nsid) {
        // Ids are unique among live peers: a namespace that held this one before is dead.
        auto [it, inserted] = by_nsid_.try_emplace(*nsid, ns.cookie);
        if (!inserted && it->second != ns.cookie) {
            if (auto old = namespaces_.find(it->second); old != namespaces_.end())
                old->second.nsid.reset();
            it->second = ns.cookie;
        }
    }
    updated_.push_back(ns.cookie);
}

void Catalog::learn(std::vector<Met>& met, std::uint64_t now_usec, bool from_proc) {
    std::vector<netlink::Peer> ask;
    std::vector<Namespace*> asked;
    std::vector<int> fds;
    for (auto& m : met) {
        auto [it, inserted] = namespaces_.try_emplace(m.cookie);
        Namespace& ns = it->second;
        if (inserted) {
            ns.cookie = m.cookie;
            ns.cookie_is_inode = !cookies_;
            ns.first_seen_usec = now_usec;
            updated_.push_back(ns.cookie);
            if (auto h = hints_.find(m.cookie); h != hints_.end() && !ns.cookie_is_inode) {
                set_nsid(ns, h->second); // known from before a restart: no need to ask
                hints_.erase(h);
            } else if (asking_) {
                ask.push_back(netlink::ByFd{m.fd.get()});
                asked.push_back(&ns);
                fds.push_back(m.fd.get());
            }
        }
        ns.inode = m.inode;
        ns.path = m.path;
        if (from_proc) {
            if (ns.seen_pass != pass_ && ns.pid != m.pid) {
                ns.pid = m.pid;
                updated_.push_back(ns.cookie);
            }
            ns.seen_pass = pass_;
        }
    }
    auto ask_ids = [&] {
        if (ask.empty())
            return;
        stats_.queried += ask.size();
        auto replies = requests_.probe(ask, std::nullopt);
        if (!replies)
            return; // asked again by refresh_unassigned when an unknown id shows up
        for (std::size_t i = 0; i < replies->size(); ++i) {
            const auto& r = (*replies)[i];
            if (r.error == 0 && r.message.nsid >= 0)
                set_nsid(*asked[i], r.message.nsid);
        }
    };
    ask_ids();
    if (assign_ids_) {
        // --assign-ids: give the namespaces found without an id one (auto), then ask again.
        std::vector<netlink::Peer> again;
        std::vector<Namespace*> again_ns;
        for (std::size_t i = 0; i < asked.size(); ++i) {
            if (asked[i]->nsid || asked[i]->cookie == self_cookie_)
                continue; // an id for our own namespace in its own table serves nothing
            if (requests_.assign(-1, netlink::ByFd{fds[i]})) {
                ++stats_.assigned;
                again.push_back(netlink::ByFd{fds[i]});
                again_ns.push_back(asked[i]);
            } else {
                ++stats_.assign_failures;
            }
        }
        ask = std::move(again);
        asked = std::move(again_ns);
        ask_ids();
    }
    met.clear(); // closes every fd
}

void Catalog::scan_mounts(std::uint64_t now_usec, bool full) {
    const auto text = read_file(roots_.proc_dir + "/self/mountinfo");
    if (!text)
        return;
    std::vector<Met> met;
    decltype(mounts_) seen;
    for (const auto& mount : parse_nsfs_mounts(*text)) {
        if (seen.count(mount.path))
            continue; // mounted over: one entry per path (meet() opens the topmost)
        const auto old = mounts_.find(mount.path);
        if (!full && old != mounts_.end() && old->second.first == mount.inode &&
            namespaces_.count(old->second.second)) {
            seen.emplace(mount.path, old->second);
            continue;
        }
        auto m = meet(mount.path, std::nullopt);
        if (!m)
            continue;
        seen.emplace(mount.path, std::make_pair(m->inode, m->cookie));
        met.push_back(std::move(*m));
        if (met.size() == kChunk)
            learn(met, now_usec, false);
    }
    learn(met, now_usec, false);
    mounts_ = std::move(seen);
    std::unordered_map<std::uint64_t, std::vector<std::string>> names; // cookie -> names
    for (const auto& [path, at] : mounts_) {
        auto& n = names[at.second];
        const auto slash = path.rfind('/');
        if (slash != std::string::npos && path.compare(0, slash, roots_.netns_dir) == 0 &&
            slash == roots_.netns_dir.size())
            n.push_back(path.substr(slash + 1));
    }
    for (auto& [cookie, ns] : namespaces_) {
        const auto it = names.find(cookie);
        ns.mounted = it != names.end();
        if (!ns.mounted)
            continue; // keeps the names it had: where it was last seen
        std::sort(it->second.begin(), it->second.end());
        if (it->second != ns.names) {
            ns.names = std::move(it->second);
            updated_.push_back(cookie);
        }
    }
}

void Catalog::restart_pass() {
    proc_.reset();
    pass_inodes_.clear();
    ++pass_;
}

bool Catalog::scan_proc(std::size_t budget, std::uint64_t now_usec) {
    if (!proc_) {
        proc_.reset(::opendir(roots_.proc_dir.c_str()));
        pass_inodes_.clear();
        if (!proc_)
            return false;
    }
    std::vector<Met> met;
    for (std::size_t n = 0; n < budget; ++n) {
        errno = 0;
        const dirent* d = ::readdir(proc_.get());
        if (d == nullptr) {
            proc_.reset();
            // The pass is over: what no process and no mount held during it is out of reach.
            learn(met, now_usec, true);
            for (auto it = namespaces_.begin(); it != namespaces_.end();) {
                auto next = std::next(it);
                if (it->second.seen_pass != pass_ && !it->second.mounted)
                    drop(it);
                it = next;
            }
            ++pass_;
            ++stats_.passes;
            hints_.clear(); // a namespace the pass did not meet is gone
            return true;
        }
        char* end = nullptr;
        const long pid = std::strtol(d->d_name, &end, 10);
        if (pid <= 0 || *end != '\0')
            continue;
        const std::string path = roots_.proc_dir + "/" + d->d_name + "/ns/net";
        struct stat st {};
        if (::stat(path.c_str(), &st) < 0)
            continue;
        const auto inode = static_cast<std::uint64_t>(st.st_ino);
        if (auto known = pass_inodes_.find(inode); known != pass_inodes_.end()) {
            // Met already in this pass: its cookie is known, no need to open it again.
            continue;
        }
        auto m = meet(path, static_cast<pid_t>(pid));
        if (!m)
            continue;
        pass_inodes_.emplace(m->inode, m->cookie);
        met.push_back(std::move(*m));
        if (met.size() == kChunk)
            learn(met, now_usec, true);
    }
    learn(met, now_usec, true);
    return false;
}

bool Catalog::refresh_unassigned(std::uint64_t deadline_usec, const std::function<bool()>& enough) {
    std::vector<UniqueFd> fds;
    std::vector<netlink::Peer> ask;
    std::vector<std::uint64_t> cookies;
    std::vector<Met> other;
    auto flush = [&] {
        if (ask.empty())
            return;
        stats_.queried += ask.size();
        auto replies = requests_.probe(ask, std::nullopt);
        if (replies)
            for (std::size_t i = 0; i < replies->size(); ++i) {
                const auto& r = (*replies)[i];
                auto it = namespaces_.find(cookies[i]);
                if (r.error == 0 && r.message.nsid >= 0 && it != namespaces_.end())
                    set_nsid(it->second, r.message.nsid);
            }
        fds.clear();
        ask.clear();
        cookies.clear();
    };
    std::vector<Namespace*> todo;
    for (auto& [cookie, ns] : namespaces_)
        if (!ns.nsid && ns.asked_round != round_)
            todo.push_back(&ns);
    std::sort(todo.begin(), todo.end(), [](const Namespace* a, const Namespace* b) {
        return a->first_seen_usec > b->first_seen_usec;
    });
    bool done = true;
    for (Namespace* next : todo) {
        auto& ns = *next;
        const auto cookie = ns.cookie;
        if (monotonic_usec() >= deadline_usec) {
            done = false;
            break;
        }
        if (ask.empty() && enough && enough())
            break; // every id is explained: the rest of the round would find nothing
        ns.asked_round = round_;
        auto m = meet(ns.path, std::nullopt);
        if (!m)
            continue;
        if (m->cookie != cookie) {
            // The path leads to another namespace now (the inode was reused): meet that one.
            other.push_back(std::move(*m));
            continue;
        }
        ask.push_back(netlink::ByFd{m->fd.get()});
        cookies.push_back(cookie);
        fds.push_back(std::move(m->fd));
        // Small chunks: at 10000 ids one GET that finds nothing costs ~0.2 ms.
        if (ask.size() == kRefreshChunk)
            flush();
    }
    flush();
    learn(other, 0, false);
    return done;
}

std::string Catalog::export_ids(std::string_view boot_id, std::uint64_t self_cookie) const {
    std::string out =
        "nsidd-ids 1 " + std::string(boot_id) + " " + std::to_string(self_cookie) + "\n";
    for (const auto& [cookie, ns] : namespaces_)
        if (ns.nsid && !ns.cookie_is_inode)
            out += std::to_string(cookie) + " " + std::to_string(*ns.nsid) + "\n";
    return out;
}

bool Catalog::import_ids(std::string_view text, std::string_view boot_id, std::uint64_t self_cookie,
                         std::size_t max_lines) {
    auto number = [](std::string_view s, std::uint64_t max) -> std::optional<std::uint64_t> {
        if (s.empty() || s.size() > 20)
            return std::nullopt;
        std::uint64_t v = 0;
        for (char c : s) {
            if (c < '0' || c > '9')
                return std::nullopt;
            const std::uint64_t d = static_cast<std::uint64_t>(c - '0');
            if (v > (max - d) / 10)
                return std::nullopt;
            v = v * 10 + d;
        }
        return v;
    };
    auto next_line = [&text]() -> std::optional<std::string_view> {
        const auto eol = text.find('\n');
        if (eol == std::string_view::npos)
            return std::nullopt; // every line ends with one: a cut file is rejected
        auto line = text.substr(0, eol);
        text.remove_prefix(eol + 1);
        return line;
    };
    const std::string header =
        "nsidd-ids 1 " + std::string(boot_id) + " " + std::to_string(self_cookie);
    if (boot_id.empty() || next_line() != std::optional<std::string_view>(header))
        return false;
    std::unordered_map<std::uint64_t, std::int32_t> hints;
    for (std::size_t n = 0; !text.empty(); ++n) {
        const auto line = next_line();
        if (!line || n == max_lines)
            return false;
        const auto sp = line->find(' ');
        if (sp == std::string_view::npos)
            return false;
        const auto cookie = number(line->substr(0, sp), UINT64_MAX);
        const auto nsid = number(line->substr(sp + 1), INT32_MAX);
        if (!cookie || !nsid || !hints.emplace(*cookie, static_cast<std::int32_t>(*nsid)).second)
            return false;
    }
    hints_ = std::move(hints);
    return true;
}

void Catalog::forget(std::uint64_t cookie) {
    if (auto it = namespaces_.find(cookie); it != namespaces_.end())
        drop(it);
}

void Catalog::drop(std::unordered_map<std::uint64_t, Namespace>::iterator it) {
    ++ids_version_;
    if (it->second.nsid)
        if (auto n = by_nsid_.find(*it->second.nsid); n != by_nsid_.end() && n->second == it->first)
            by_nsid_.erase(n);
    namespaces_.erase(it);
}

const Namespace* Catalog::by_nsid(std::int32_t nsid) const {
    auto it = by_nsid_.find(nsid);
    if (it == by_nsid_.end())
        return nullptr;
    auto ns = namespaces_.find(it->second);
    return ns == namespaces_.end() ? nullptr : &ns->second;
}

std::vector<std::uint64_t> Catalog::take_updated() {
    std::vector<std::uint64_t> out;
    out.swap(updated_);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

} // namespace nsidd::netns
