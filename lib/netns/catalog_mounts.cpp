// SPDX-License-Identifier: LGPL-2.1-or-later
// The catalog's view of the nsfs mounts: which namespace each mount point reaches, and from
// that each namespace's mount points, names and former names (docs/design.md, "Mount table").
#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <string_view>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "netns/catalog.hpp"
#include "netns/fd_scan.hpp"
#include "netns/owner.hpp"
#include "util/file.hpp"

namespace nsidd::netns {
namespace {

// statx(2) gives the unique mount id (never reused within a boot) from Linux 6.8; older
// headers lack the flag.
constexpr unsigned kStatxMntIdUnique = 0x4000;

} // namespace

void Catalog::use_saved_evidence(std::unordered_map<std::uint64_t, std::uint64_t> no_process_since,
                                 std::unordered_map<std::uint64_t, Owner> owners) {
    saved_no_process_ = std::move(no_process_since);
    saved_owners_ = std::move(owners);
}

void Catalog::use_saved_ids(SavedIds ids,
                            const std::unordered_map<std::uint64_t, std::uint64_t>& mounts) {
    hints_ = std::move(ids);
    mount_hints_.clear();
    for (const auto& [cookie, mount] : mounts)
        if (hints_.count(cookie))
            mount_hints_.emplace(mount, cookie);
}

std::unordered_map<std::uint64_t, std::uint64_t> Catalog::saved_mount_ids() const {
    // A mount's root is fixed for its life, and the namespace its mount point reached at the
    // last look (same inode, so the same live namespace) is that root.
    std::unordered_map<std::uint64_t, std::uint64_t> out;
    const auto& points = mount_table_.paths();
    for (const auto& [id, m] : mount_table_.by_id())
        if (const auto at = points.find(*m.path);
            at != points.end() && at->second.cookie != 0 && at->second.inode == m.inode)
            if (const auto ns = namespaces_.find(at->second.cookie);
                ns != namespaces_.end() && ns->second.nsid && !ns->second.cookie_is_inode)
                out.emplace(ns->first, id);
    return out;
}

std::optional<std::pair<std::uint64_t, std::uint64_t>>
Catalog::reach_saved_mount(const std::string& path, std::uint64_t now_usec) {
    struct statx stx {};
    if (::statx(AT_FDCWD, path.c_str(), 0, STATX_INO | kStatxMntIdUnique, &stx) < 0 ||
        !(stx.stx_mask & kStatxMntIdUnique))
        return std::nullopt;
    const auto hint = mount_hints_.find(stx.stx_mnt_id);
    if (hint == mount_hints_.end())
        return std::nullopt;
    const auto cookie = hint->second;
    auto it = namespaces_.find(cookie);
    if (it == namespaces_.end()) {
        if (!hints_.count(cookie))
            return std::nullopt; // its id is not known without asking: opened instead
        it = namespaces_.try_emplace(cookie).first;
        add(it->second, cookie, now_usec); // its id checked against the kernel after the scan
    }
    Namespace& ns = it->second;
    ++stats_.by_saved_mount;
    ns.inode = stx.stx_ino; // its mount point is recorded by place(), after this scan
    return std::make_pair(static_cast<std::uint64_t>(stx.stx_ino), cookie);
}

void Catalog::scan_mounts(std::uint64_t now_usec, bool full) {
    if (!mount_table_.refresh(full))
        return;
    // (One-path blocks shared with the mount table: no path is copied.)
    std::vector<Strings> todo = mount_table_.take_changed_paths(); // sorted, each once
    auto more = std::exchange(recheck_, {});
    if (full) // every point mounted, and every one that reached a namespace at the last look
        for (const auto& [path, point] : mount_table_.paths())
            more.push_back(path);
    if (todo.empty() && more.empty())
        return; // during a storm of `ip netns add`, most wakeups of other kinds find this
    if (!more.empty()) {
        // (After a burst of deaths, the dead's mount points are in both lists: each once.)
        sort_unique_paths(more);
        std::vector<Strings> merged;
        merged.reserve(todo.size() + more.size());
        std::set_union(todo.begin(), todo.end(), more.begin(), more.end(),
                       std::back_inserter(merged),
                       [](const Strings& a, const Strings& b) { return a.front() < b.front(); });
        todo = std::move(merged);
    }
    // A point neither mounted nor reaching a namespace (one that died and was let go of
    // already: a burst of deaths leaves thousands) has nothing to open and nothing to place.
    std::erase_if(todo,
                  [this](const Strings& p) { return mount_table_.point(p.front()) == nullptr; });
    // Open what each mount point reaches now (the topmost mount); place them once every
    // namespace met is recorded.
    std::vector<Opened> opened;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> reached(todo.size()); // (inode, cookie)
    for (std::size_t i = 0; i < todo.size(); ++i) {
        // (No nsfs mount left there: nothing to open.)
        if (!mount_table_.mounted(todo[i].front()))
            continue;
        // A NUL-terminated copy for the syscalls, freed at once.
        const std::string path(todo[i].front());
        if (!mount_hints_.empty())
            if (const auto known = reach_saved_mount(path, now_usec)) {
                reached[i] = *known;
                continue;
            }
        auto m = open_ns(path, std::nullopt);
        if (!m) {
            recheck_.push_back(todo[i]);
            continue;
        }
        reached[i] = {m->inode, m->cookie};
        opened.push_back(std::move(*m));
        if (opened.size() == kChunk)
            record(opened, now_usec, false);
    }
    record(opened, now_usec, false);
    if (!mount_hints_.empty()) { // for the first scan after a restart only
        mount_hints_.clear();
        verify_saved_ids(kVerifyAtOnce);
    }
    for (std::size_t i = 0; i < todo.size(); ++i)
        place(todo[i].front(), reached[i].first, reached[i].second);
}

std::optional<std::string_view> Catalog::name_of(std::string_view path) const {
    const auto slash = path.rfind('/');
    if (slash == std::string::npos || slash != roots_.netns_dir.size() ||
        path.substr(0, slash) != roots_.netns_dir)
        return std::nullopt;
    return path.substr(slash + 1);
}

void Catalog::place(std::string_view path, std::uint64_t inode, std::uint64_t cookie) {
    const auto name = name_of(path);
    if (const auto* at = mount_table_.point(path); at != nullptr && at->cookie != 0) {
        if (at->cookie == cookie) {
            mount_table_.reach(path, inode, cookie);
            return;
        }
        // It reached another namespace: that one loses this mount point (and the name, which
        // becomes a former name).
        if (auto was = namespaces_.find(at->cookie); was != namespaces_.end()) {
            Namespace& ns = was->second;
            // (Names and mount points are shared with registry rows: changed copies replace
            // them.)
            ns.mounts = ns.mounts.without(path);
            if (name && ns.names.contains(*name)) {
                ns.names = ns.names.without(*name);
                ns.former_names = ns.former_names.with(*name);
            }
            changed_.push_back(ns.cookie);
        }
    }
    const auto it = cookie == 0 ? namespaces_.end() : namespaces_.find(cookie);
    if (it == namespaces_.end()) {
        mount_table_.reach(path, 0, 0);
        return;
    }
    Namespace& ns = it->second;
    mount_table_.reach(path, inode, cookie);
    // Its only mount point (the common case) is the mount table's own block for the path.
    ns.mounts = ns.mounts.empty() ? mount_table_.path_block(path) : ns.mounts.with(path);
    if (name) {
        ns.names = ns.names.with(*name);
        ns.former_names = ns.former_names.without(*name);
    }
    changed_.push_back(ns.cookie);
}

void Catalog::scan_dangling() {
    dangling_.clear();
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(roots_.netns_dir.c_str()), ::closedir);
    if (!dir)
        return; // no netns directory: no names at all
    while (const dirent* d = ::readdir(dir.get())) {
        const std::string name = d->d_name;
        if (name == "." || name == ".." || d->d_type == DT_DIR)
            continue;
        if (!mount_table_.mounted(roots_.netns_dir + "/" + name))
            dangling_.push_back(name);
    }
    std::sort(dangling_.begin(), dangling_.end());
}

std::optional<Catalog::Opened> Catalog::open_other_mount(int root, const NsfsMount& m) {
    // Another mount namespace is another user's to build: a directory on the way may be a FUSE
    // mount whose server never answers. The path is walked in the kernel's cache alone
    // (RESOLVE_CACHED: EAGAIN where a file system would be asked; the next pass tries again),
    // inside that namespace's root, opened O_PATH (no file system opens anything), checked to
    // be that very mount, and reopened through our own fd: an nsfs open.
    if (root < 0)
        return std::nullopt;
    open_how how{};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_CACHED | RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    UniqueFd handle(
        static_cast<int>(::syscall(SYS_openat2, root, m.path.c_str(), &how, sizeof how)));
    if (!handle)
        return std::nullopt;
    const auto info = own_fdinfo(roots_.proc_dir, handle.get());
    if (!info || info->mnt_id != m.mount_id || info->inode != m.inode)
        return std::nullopt;
    return open_ns(roots_.proc_dir + "/self/fd/" + std::to_string(handle.get()), std::nullopt);
}

std::size_t Catalog::read_other_mounts(const char* pid, std::uint64_t now_usec) {
    const auto base = roots_.proc_dir + "/" + pid;
    auto mnt = read_link(base + "/ns/mnt");
    if (own_mnt_ns_.empty() || mnt.empty() || mnt == own_mnt_ns_ ||
        !pass_mnt_ns_.insert(std::move(mnt)).second)
        return 0;
    const auto text = read_file(base + "/mountinfo");
    if (!text)
        return 0; // exited meanwhile
    if (pass_known_inodes_.empty())
        for (const auto& [cookie, ns] : namespaces_)
            pass_known_inodes_.insert(ns.inode);
    std::vector<Opened> opened;
    UniqueFd root;
    std::optional<CopyHolder> holder; // who has this mount namespace's copies, read once
    for (auto& m : parse_nsfs_mounts(*text)) {
        auto path = base + "/root" + m.path;
        const bool copy = fold_propagated(m);
        // A namespace no process here is in and no mount of ours reaches is named through
        // this mount alone (e.g. a CNI mount in a runtime's private mount namespace).
        if (!pass_known_inodes_.count(m.inode) && !pass_inodes_.count(m.inode)) {
            if (!root)
                root.reset(::open((base + "/root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
            if (auto ns = open_other_mount(root.get(), m)) {
                pass_known_inodes_.insert(ns->inode);
                opened.push_back(std::move(*ns));
            }
        }
        if (copy)
            continue;
        if (!holder) {
            holder.emplace();
            holder->pid = std::atoi(pid);
            holder->comm = process_comm(roots_.proc_dir, holder->pid);
            if (auto cgroup = read_file(base + "/cgroup", 64 * 1024))
                if (auto owner = parse_cgroup_owner(*cgroup))
                    holder->owner = Shared(std::move(*owner));
        }
        auto& listed = pass_other_mounts_[m.inode].emplace_back(*holder);
        listed.path = std::move(path);
    }
    const auto work = opened.size() + text->size() / 256; // a process's worth per 256 bytes
    record(opened, now_usec, false);
    return work;
}

bool Catalog::fold_propagated(const NsfsMount& m) {
    if (m.peer_group == 0 && m.master == 0)
        return false; // private: a holder of its own (an agent container's volume)
    if (!pass_own_groups_read_) {
        // Our own nsfs mounts' peer groups, and the groups they receive from, read once per
        // pass where some other mount namespace has a propagating nsfs mount.
        pass_own_groups_read_ = true;
        if (const auto own = read_file(roots_.proc_dir + "/self/mountinfo"))
            for (const auto& o : parse_nsfs_mounts(*own))
                for (const auto group : {o.peer_group, o.master})
                    if (group != 0)
                        pass_own_groups_.emplace(o.inode, group);
    }
    // It goes with a mount of ours: a peer, a slave of one (unmounting ours takes it), the
    // mount ours receives from (nsidd in a container whose /run/netns is the node's, bound
    // HostToContainer: the node's own mount, which unmounting takes ours with it) or another
    // slave of that one. Or it goes with a copy elsewhere already named (the same group).
    const bool folded =
        pass_own_groups_.count({m.inode, m.master}) ||
        pass_own_groups_.count({m.inode, m.peer_group}) ||
        !pass_other_groups_.emplace(m.inode, m.master ? m.master : m.peer_group).second;
    if (folded)
        ++pass_also_in_[m.inode];
    return folded;
}

} // namespace nsidd::netns
