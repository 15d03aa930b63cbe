// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/catalog.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string_view>

#include <fcntl.h>
#include <sys/stat.h>

#include "netns/mountinfo.hpp"
#include "netns/owner.hpp"
#include "util/file.hpp"

namespace nsidd::netns {
namespace {

// Questions sent together by a round, between looks at the clock: at 10000 ids one that finds
// nothing costs the kernel ~0.15 ms, and the event loop waits for them.
constexpr std::size_t kRoundChunk = 2;

// listmount(2) lists the real mount table: only for the real /proc. NSIDD_MOUNT_TABLE=mountinfo
// keeps to the text (the fallback of kernels before 6.8, tested so).
bool uses_listmount(const Roots& roots) {
    const char* choice = std::getenv("NSIDD_MOUNT_TABLE");
    return roots.proc_dir == "/proc" &&
           (choice == nullptr || std::string_view(choice) != "mountinfo");
}

} // namespace

Catalog::Catalog(Roots roots, Queries& queries, bool assign_ids)
    : roots_(std::move(roots)), queries_(queries), assign_ids_(assign_ids),
      mount_table_(roots_.proc_dir + "/self/mountinfo", uses_listmount(roots_)) {
    if (auto self = open_ns(roots_.proc_dir + "/self/ns/net", std::nullopt)) {
        self_cookie_ = self->cookie;
        self_inode_ = self->inode;
    }
}

std::optional<Catalog::Opened> Catalog::open_ns(const std::string& path, std::optional<pid_t> pid) {
    auto fd = open_namespace(path);
    if (!fd)
        return std::nullopt; // gone, or not ours to open
    ++stats_.opened;
    struct stat st {};
    if (::fstat(fd->get(), &st) < 0)
        return std::nullopt;
    Opened m{std::move(*fd), static_cast<std::uint64_t>(st.st_ino), 0, pid};
    if (auto cookie = queries_.cookie(m.fd.get())) {
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
    if (ns.nsid)
        if (const auto* at = by_nsid_.get(*ns.nsid); at != nullptr && *at == ns.cookie)
            by_nsid_.erase(*ns.nsid);
    ns.nsid = nsid;
    if (nsid) {
        unassigned_.erase(ns.cookie);
        // Ids are unique among live peers: a namespace that held this one before is dead.
        auto& at = by_nsid_[*nsid];
        if (at != 0 && at != ns.cookie)
            if (auto old = namespaces_.find(at); old != namespaces_.end()) {
                old->second.nsid.reset();
                unassigned_.insert(old->first);
            }
        at = ns.cookie;
    } else {
        unassigned_.insert(ns.cookie);
    }
    changed_.push_back(ns.cookie);
}

void Catalog::ask_ids(const std::vector<Namespace*>& ns, const std::vector<int>& fds) {
    if (fds.empty())
        return;
    stats_.queried += fds.size();
    auto ids = queries_.ids_of(fds);
    if (!ids)
        return; // asked again by ask_unassigned() when an unexplained id shows up
    for (std::size_t i = 0; i < ids->size() && i < ns.size(); ++i)
        if ((*ids)[i])
            set_nsid(*ns[i], (*ids)[i]);
}

void Catalog::assign_missing(const std::vector<Namespace*>& asked, const std::vector<int>& fds) {
    std::vector<Namespace*> again;
    std::vector<int> again_fds;
    for (std::size_t i = 0; i < asked.size(); ++i) {
        if (asked[i]->nsid || asked[i]->cookie == self_cookie_)
            continue; // an id for our own namespace in its own table serves nothing
        if (queries_.assign(fds[i])) {
            ++stats_.assigned;
            again.push_back(asked[i]);
            again_fds.push_back(fds[i]);
        } else {
            ++stats_.assign_failures;
        }
    }
    ask_ids(again, again_fds);
}

bool Catalog::add(Namespace& ns, std::uint64_t cookie, std::uint64_t now_usec) {
    unassigned_.insert(cookie);
    ns.cookie = cookie;
    ns.cookie_is_inode = !cookies_;
    ns.first_seen_usec = now_usec;
    changed_.push_back(cookie);
    if (const auto o = saved_owners_.find(cookie); o != saved_owners_.end())
        ns.owner = Shared(std::move(o->second)); // until a process met inside says better
    const auto h = hints_.find(cookie);
    if (h == hints_.end() || ns.cookie_is_inode)
        return false;
    set_nsid(ns, h->second); // known from before a restart: no need to ask
    ns.unverified = true;
    hints_.erase(h);
    return true;
}

void Catalog::record(std::vector<Opened>& opened, std::uint64_t now_usec, bool from_proc) {
    std::vector<Namespace*> asked, hinted;
    std::vector<int> fds, hinted_fds;
    for (auto& m : opened) {
        auto [it, inserted] = namespaces_.try_emplace(m.cookie);
        Namespace& ns = it->second;
        if (inserted) {
            if (add(ns, m.cookie, now_usec)) {
                if (stats_.saved_ids_verified + hinted.size() < kVerifyAtOnce) {
                    hinted.push_back(&ns);
                    hinted_fds.push_back(m.fd.get());
                }
            } else if (ask_new_) {
                asked.push_back(&ns);
                fds.push_back(m.fd.get());
            }
        }
        ns.inode = m.inode;
        if (from_proc) {
            ++ns.pass_processes;
            if (ns.seen_pass != pass_ && ns.pid != m.pid) {
                ns.pid = m.pid;
                describe_process(ns);
                changed_.push_back(ns.cookie);
            }
            ns.seen_pass = pass_;
        }
    }
    if (!check_hints(hinted, hinted_fds)) {
        // Every namespace of this batch is asked instead (the fds are still open).
        for (auto& m : opened)
            if (auto it = namespaces_.find(m.cookie); it != namespaces_.end() && !it->second.nsid) {
                asked.push_back(&it->second);
                fds.push_back(m.fd.get());
            }
    }
    ask_ids(asked, fds);
    if (assign_ids_)
        assign_missing(asked, fds);
    opened.clear(); // closes every fd
}

bool Catalog::check_hints(const std::vector<Namespace*>& ns, const std::vector<int>& fds) {
    if (ns.empty())
        return true;
    stats_.queried += fds.size();
    auto ids = queries_.ids_of(fds);
    if (!ids)
        return true; // unanswered: checked after a later pass
    stats_.saved_ids_verified += ns.size();
    bool right = true;
    for (std::size_t i = 0; i < ids->size() && i < ns.size(); ++i) {
        if ((*ids)[i] == ns[i]->nsid) {
            ns[i]->unverified = false;
            continue;
        }
        contradict(*ns[i], (*ids)[i]);
        right = false;
    }
    return right;
}

void Catalog::contradict(Namespace& ns, std::optional<std::int32_t> real) {
    // One wrong line costs that line alone: the kernel's answer replaces it. A namespace that
    // took the same id from another saved line, and the lines not used yet that name it, are
    // wrong too (ids are unique among live namespaces).
    if (std::exchange(ns.unverified, false)) { // (else counted as another's conflict)
        ++stats_.saved_ids_rejected;
        distrusted_.push_back(ns.cookie);
    }
    if (real) {
        if (const auto* at = by_nsid_.get(*real); at != nullptr && *at != ns.cookie)
            if (auto other = namespaces_.find(*at);
                other != namespaces_.end() && other->second.unverified) {
                ++stats_.saved_ids_rejected;
                other->second.unverified = false;
                distrusted_.push_back(other->first);
            }
        std::erase_if(hints_, [&](const auto& h) { return h.second == *real; });
    }
    set_nsid(ns, real);
}

void Catalog::verify_saved_ids(std::size_t n) {
    std::vector<Opened> opened;
    std::vector<Namespace*> ns;
    std::vector<int> fds;
    for (auto& [cookie, entry] : namespaces_) {
        if (ns.size() == n)
            break;
        if (!entry.unverified)
            continue;
        auto m = open_ns(reach_path(entry), std::nullopt);
        if (!m || m->cookie != cookie)
            continue;
        ns.push_back(&entry);
        fds.push_back(m->fd.get());
        opened.push_back(std::move(*m));
    }
    check_hints(ns, fds);
}

void Catalog::describe_process(Namespace& ns) {
    ns.comm = {};
    if (!ns.pid)
        return;
    const auto dir = roots_.proc_dir + "/" + std::to_string(*ns.pid);
    if (auto comm = process_comm(roots_.proc_dir, *ns.pid); !comm.empty())
        ns.comm = Shared(std::move(comm));
    // A process that left (or has no cgroup file) keeps the owner found before.
    if (auto cgroup = read_file(dir + "/cgroup", 64 * 1024))
        if (auto owner = parse_cgroup_owner(*cgroup); owner && *owner != *ns.owner)
            ns.owner = Shared(std::move(*owner));
}

void Catalog::restart_pass() {
    proc_.reset();
    drop_pass_scratch();
    for (auto& [cookie, ns] : namespaces_)
        ns.pass_processes = 0;
    ++pass_;
}

void Catalog::drop_pass_scratch() {
    // Freed, not cleared: between passes they would keep a bucket array and, where another
    // mount namespace was read, an inode of every namespace known.
    pass_inodes_ = {};
    pass_mnt_ns_ = {};
    pass_other_mounts_ = {};
    pass_own_groups_ = {};
    pass_other_groups_ = {};
    pass_also_in_ = {};
    pass_own_groups_read_ = false;
    pass_known_inodes_ = {};
}

void Catalog::end_pass(std::uint64_t now_usec) {
    proc_.reset();
    for (auto& [cookie, ns] : namespaces_) {
        // Bind mounts in the other mount namespaces this pass met.
        std::vector<CopyHolder> copies;
        if (const auto it = pass_other_mounts_.find(ns.inode); it != pass_other_mounts_.end()) {
            copies = std::move(it->second);
            std::sort(copies.begin(), copies.end(),
                      [](const auto& a, const auto& b) { return a.path < b.path; });
        }
        const auto also = pass_also_in_.find(ns.inode);
        const auto also_in = also == pass_also_in_.end() ? 0 : also->second;
        if (copies != *ns.copies || also_in != ns.also_in) {
            std::vector<std::string> paths;
            for (const auto& c : copies)
                paths.push_back(c.path);
            ns.other_mounts = Strings(paths);
            ns.copies =
                copies.empty() ? Shared<std::vector<CopyHolder>>{} : Shared(std::move(copies));
            ns.also_in = also_in;
            changed_.push_back(cookie);
        }
        // What this pass counted is what holds it now; without a process, no pid to show.
        const auto counted = std::exchange(ns.pass_processes, 0);
        if (counted > 0) {
            ns.no_process_since_usec = 0;
        } else if (ns.no_process_since_usec == 0) {
            // Its grace starts now (or ran on from before a restart): changed, so that its
            // verdict gets the deadline (a leak older than nsidd is judged when grace ends).
            const auto saved = saved_no_process_.find(cookie);
            ns.no_process_since_usec =
                saved != saved_no_process_.end() ? std::min(now_usec, saved->second) : now_usec;
            changed_.push_back(cookie);
        }
        if (!saved_no_process_.empty())
            saved_no_process_.erase(cookie);
        if (counted != ns.processes || (counted == 0 && ns.pid)) {
            ns.processes = counted;
            if (counted == 0) {
                ns.pid.reset();
                ns.comm = {};
            }
            changed_.push_back(cookie);
        }
    }
    for (auto it = namespaces_.begin(); it != namespaces_.end();) {
        auto next = std::next(it);
        if (it->second.seen_pass != pass_ && !it->second.mounted())
            drop(it);
        it = next;
    }
    drop_pass_scratch();
    ++pass_;
    ++stats_.passes;
    hints_.clear(); // a namespace the pass did not meet is gone
    saved_no_process_.clear();
    saved_owners_.clear();
}

bool Catalog::scan_proc(std::size_t budget, std::uint64_t now_usec) {
    if (!proc_) {
        proc_.reset(::opendir(roots_.proc_dir.c_str()));
        if (own_mnt_ns_.empty())
            own_mnt_ns_ = read_link(roots_.proc_dir + "/self/ns/mnt");
        if (!proc_)
            return false;
    }
    std::vector<Opened> opened;
    for (std::size_t n = 0; n < budget; ++n) {
        errno = 0;
        const dirent* d = ::readdir(proc_.get());
        if (d == nullptr) {
            // The pass is over: what no process and no mount held during it is out of reach.
            record(opened, now_usec, true);
            end_pass(now_usec);
            return true;
        }
        char* end = nullptr;
        const long pid = std::strtol(d->d_name, &end, 10);
        if (pid <= 0 || *end != '\0')
            continue;
        const std::string path = roots_.proc_dir + "/" + d->d_name + "/ns/net";
        struct stat st {};
        if (::stat(path.c_str(), &st) < 0)
            continue;                                // gone
        n += read_other_mounts(d->d_name, now_usec); // a mount table counts as many processes
        if (const auto met = pass_inodes_.find(st.st_ino); met != pass_inodes_.end()) {
            // Met already in this pass: its cookie is known; one more process inside.
            if (auto ns = namespaces_.find(met->second); ns != namespaces_.end())
                ++ns->second.pass_processes;
            continue;
        }
        auto m = open_ns(path, static_cast<pid_t>(pid));
        if (!m)
            continue;
        pass_inodes_.emplace(m->inode, m->cookie);
        opened.push_back(std::move(*m));
        if (opened.size() == kChunk)
            record(opened, now_usec, true);
    }
    record(opened, now_usec, true);
    return false;
}

bool Catalog::ask_unassigned(const std::function<bool()>& out_of_time,
                             const std::function<bool()>& enough) {
    std::vector<Namespace*> todo;
    for (const auto cookie : unassigned_)
        if (auto& ns = namespaces_.at(cookie); ns.asked_round != round_)
            todo.push_back(&ns);
    std::sort(todo.begin(), todo.end(), [](const Namespace* a, const Namespace* b) {
        return a->first_seen_usec > b->first_seen_usec;
    });
    std::vector<Opened> asked, other;
    const auto flush = [&] {
        std::vector<Namespace*> ns;
        std::vector<int> fds;
        for (auto& m : asked) {
            ns.push_back(&namespaces_.at(m.cookie));
            fds.push_back(m.fd.get());
        }
        ask_ids(ns, fds);
        asked.clear();
    };
    bool done = true;
    std::size_t tried = 0;
    for (Namespace* ns : todo) {
        // The first chunk is always asked: a round makes progress however busy the loop is.
        if (tried >= kRoundChunk && out_of_time && out_of_time()) {
            done = false;
            break;
        }
        ++tried;
        if (asked.empty() && enough && enough())
            break; // every id is explained: the rest of the round would find nothing
        ns->asked_round = round_;
        auto m = open_ns(reach_path(*ns), std::nullopt);
        if (!m)
            continue;
        // The path may lead to another namespace now (the inode was reused): record that one.
        (m->cookie == ns->cookie ? asked : other).push_back(std::move(*m));
        if (asked.size() == kRoundChunk)
            flush();
    }
    flush();
    record(other, 0, false);
    return done;
}

bool Catalog::is_reachable(std::uint64_t cookie) {
    const auto it = namespaces_.find(cookie);
    if (it == namespaces_.end())
        return false;
    const auto m = open_ns(reach_path(it->second), std::nullopt);
    return m && m->cookie == cookie;
}

std::string Catalog::reach_path(const Namespace& ns) const {
    if (!ns.mounts.empty())
        return std::string(ns.mounts.front());
    if (!ns.other_mounts.empty())
        return std::string(ns.other_mounts.front());
    // Met through another mount namespace in the pass under way (other_mounts is set at its end).
    if (const auto it = pass_other_mounts_.find(ns.inode);
        it != pass_other_mounts_.end() && !it->second.empty())
        return it->second.front().path;
    if (ns.pid)
        return roots_.proc_dir + "/" + std::to_string(*ns.pid) + "/ns/net";
    return {};
}

SavedIds Catalog::saved_ids() const {
    SavedIds out;
    for (const auto& [cookie, ns] : namespaces_)
        if (ns.nsid && !ns.cookie_is_inode)
            out.emplace(cookie, *ns.nsid);
    return out;
}

void Catalog::forget(std::uint64_t cookie) {
    if (auto it = namespaces_.find(cookie); it != namespaces_.end())
        drop(it);
}

void Catalog::drop(std::unordered_map<std::uint64_t, Namespace>::iterator it) {
    ++ids_version_;
    unassigned_.erase(it->first);
    // Dropped while mounted (its id was deleted): what its mount points reach is looked at
    // again at the next scan (through its own list of them, not a walk of every mount point).
    for (const std::string_view path : it->second.mounts)
        if (auto block = mount_table_.unreach(path, it->first); !block.empty())
            recheck_.push_back(std::move(block));
    if (const auto nsid = it->second.nsid)
        if (const auto* at = by_nsid_.get(*nsid); at != nullptr && *at == it->first)
            by_nsid_.erase(*nsid);
    namespaces_.erase(it);
}

const Namespace* Catalog::by_nsid(std::int32_t nsid) const {
    const auto* at = by_nsid_.get(nsid);
    if (at == nullptr)
        return nullptr;
    auto ns = namespaces_.find(*at);
    return ns == namespaces_.end() ? nullptr : &ns->second;
}

std::vector<std::uint64_t> Catalog::take_changed() {
    std::vector<std::uint64_t> out;
    out.swap(changed_);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    // No process was seen in it: its mount points say whose it is (a runtime's sandbox), and
    // it stays so when they move (an agent's copy outliving the runtime's own mount).
    for (const auto cookie : out)
        if (const auto it = namespaces_.find(cookie); it != namespaces_.end() && !it->second.owner)
            if (auto o = owner_of_mounts(it->second.mounts, it->second.other_mounts))
                it->second.owner = Shared(std::move(*o));
    return out;
}

} // namespace nsidd::netns
