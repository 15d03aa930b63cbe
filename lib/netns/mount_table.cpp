// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/mount_table.hpp"

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <tuple>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/file.hpp"

namespace nsidd::netns {
namespace {

// listmount(2) and statmount(2), Linux 6.8+ (the same numbers on every architecture that has
// the unified syscall table); Debian 12's headers predate them.
constexpr long kStatmount = 457;
constexpr long kListmount = 458;
constexpr std::uint64_t kListRoot = ~std::uint64_t{0}; // LSMT_ROOT: the whole namespace
constexpr std::uint64_t kStatRoot = 0x08;              // STATMOUNT_MNT_ROOT
constexpr std::uint64_t kStatPoint = 0x10;             // STATMOUNT_MNT_POINT
constexpr std::uint64_t kStatFsType = 0x20;            // STATMOUNT_FS_TYPE
constexpr std::size_t kIdsPerCall = 4096;
// A listing of only the new ids asks for this many first: its scratch stays between rereads.
constexpr std::size_t kNewIdsPerCall = 64;
// NS_MNT_GET_INFO (Linux 6.12+): _IOR(0xb7, 10, struct mnt_ns_info).
struct MntNsInfo {
    std::uint32_t size = sizeof(MntNsInfo); // MNT_NS_INFO_SIZE_VER0
    std::uint32_t nr_mounts = 0;
    std::uint64_t mnt_ns_id = 0;
};
static_assert(sizeof(MntNsInfo) == 16);
constexpr unsigned long kNsMntGetInfo = (2UL << 30) | (sizeof(MntNsInfo) << 16) | (0xb7 << 8) | 10;
// Rereads that list only the new ids between two full listings (a bound on how long a removal
// hidden by a race, see list_new(), could go unseen).
constexpr int kIncrementalRereads = 64;
// A mount point is at most PATH_MAX; the reply grows to this if ever needed.
constexpr std::size_t kMaxStatBytes = 64 * 1024;
// The first rereads are checked: by the namespace's own count of mounts (6.12+), else against
// mountinfo; a difference that persists means the kernel's listmount does not list what
// mountinfo shows (early 6.8 semantics): fall back.
constexpr int kChecks = 3;

struct MntIdReq {
    std::uint32_t size = sizeof(MntIdReq); // MNT_ID_REQ_SIZE_VER0
    std::uint32_t spare = 0;
    std::uint64_t mnt_id = 0;
    std::uint64_t param = 0;
};
static_assert(sizeof(MntIdReq) == 24);

// struct statmount, as far as it is read here.
struct StatMount {
    std::uint32_t size;
    std::uint32_t spare1;
    std::uint64_t mask;
    std::uint32_t sb_dev_major, sb_dev_minor;
    std::uint64_t sb_magic;
    std::uint32_t sb_flags;
    std::uint32_t fs_type; // offsets into str
    std::uint64_t mnt_id, mnt_parent_id;
    std::uint32_t mnt_id_old, mnt_parent_id_old;
    std::uint64_t mnt_attr, mnt_propagation, mnt_peer_group, mnt_master, propagate_from;
    std::uint32_t mnt_root, mnt_point;
    std::uint64_t spare2[50];
};
static_assert(sizeof(StatMount) == 512);

bool same(std::vector<NsfsMount> a, std::vector<NsfsMount> b) {
    const auto key = [](const NsfsMount& m) {
        return std::tie(m.path, m.inode);
    };
    const auto less = [&](const NsfsMount& x, const NsfsMount& y) {
        return key(x) < key(y);
    };
    std::sort(a.begin(), a.end(), less);
    std::sort(b.begin(), b.end(), less);
    return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                      [&](const auto& x, const auto& y) { return key(x) == key(y); });
}

} // namespace

void sort_unique_paths(std::vector<Strings>& paths) {
    std::sort(paths.begin(), paths.end(),
              [](const Strings& a, const Strings& b) { return a.front() < b.front(); });
    paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
}

MountTable::MountTable(std::string mountinfo, bool listmount)
    : mountinfo_(std::move(mountinfo)), listmount_(listmount), checks_left_(kChecks) {
    if (listmount_)
        mnt_ns_.reset(::open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC));
}

bool MountTable::refresh(bool full) {
    changed_paths_.clear();
    if (!listmount_)
        return refresh_mountinfo();
    if (!refresh_listmount(full || checks_left_ > 0)) {
        fall_back(); // ENOSYS, or refused: the text it is
        return refresh_mountinfo();
    }
    sort_unique_paths(changed_paths_);
    if (checks_left_ > 0 && mount_count() == listed_.size()) {
        checks_left_ = 0; // it listed every mount the namespace counts: no text to compare
    } else if (checks_left_ > 0) {
        if (auto text = read_file(mountinfo_)) {
            if (same(mounts(), parse_nsfs_mounts(*text)))
                checks_left_ = 0;
            else if (--checks_left_ == 0)
                fall_back(); // the next refresh reads the text and reports the difference
        }
    }
    return true;
}

void MountTable::fall_back() {
    listmount_ = false;
    text_ = mounts(); // what the text is compared with next
    nsfs_.clear();
    ids_.clear();
    listed_.clear();
}

std::vector<NsfsMount> MountTable::mounts() const {
    if (!listmount_)
        return text_;
    std::vector<NsfsMount> out;
    out.reserve(nsfs_.size());
    for (const auto& [id, m] : nsfs_)
        out.push_back(NsfsMount{m.inode, std::string(m.path->front())});
    return out;
}

bool MountTable::mounted(std::string_view path) const {
    const auto at = paths_.find(path);
    return at != paths_.end() && at->second.mounts > 0;
}

MountTable::Point* MountTable::point(std::string_view path) {
    const auto at = paths_.find(path);
    return at == paths_.end() ? nullptr : &at->second;
}

Strings MountTable::path_block(std::string_view path) const {
    const auto at = paths_.find(path);
    return at == paths_.end() ? Strings() : at->first;
}

MountTable::Paths::iterator MountTable::point_at(std::string_view path) {
    if (auto at = paths_.find(path); at != paths_.end())
        return at;
    return paths_.emplace(Strings{path}, Point{}).first;
}

void MountTable::reach(std::string_view path, std::uint64_t inode, std::uint64_t cookie) {
    const auto at = paths_.find(path);
    if (at == paths_.end()) {
        if (cookie != 0)
            paths_.emplace(Strings{path}, Point{0, inode, cookie});
        return;
    }
    at->second.inode = inode;
    at->second.cookie = cookie;
    if (at->second.mounts == 0 && cookie == 0)
        paths_.erase(at);
}

Strings MountTable::unreach(std::string_view path, std::uint64_t cookie) {
    const auto at = paths_.find(path);
    if (at == paths_.end() || at->second.cookie != cookie)
        return {};
    Strings block = at->first;
    at->second.inode = at->second.cookie = 0;
    if (at->second.mounts == 0)
        paths_.erase(at);
    return block;
}

void MountTable::add(std::uint64_t id, std::uint64_t inode, std::string_view path) {
    Listed& listed = nsfs_[id];
    if (listed.path != nullptr)
        return; // listed already (mount ids are never reused)
    const auto at = point_at(path);
    ++at->second.mounts;
    changed_paths_.push_back(at->first);
    listed = Listed{inode, &at->first};
}

void MountTable::remove(std::uint64_t id, const Listed& listed) {
    const auto at = paths_.find(*listed.path);
    changed_paths_.push_back(at->first);
    nsfs_.erase(id);
    if (--at->second.mounts == 0 && at->second.cookie == 0)
        paths_.erase(at); // no mount is listed there any more: nothing points at its path
}

bool MountTable::refresh_mountinfo() {
    const auto text = read_file(mountinfo_);
    if (!text)
        return false;
    auto next = parse_nsfs_mounts(*text);
    const auto key = [](const NsfsMount& m) {
        return std::tie(m.path, m.inode);
    };
    const auto eq = [&](const NsfsMount& a, const NsfsMount& b) {
        return key(a) == key(b);
    };
    if (std::equal(next.begin(), next.end(), text_.begin(), text_.end(), eq))
        return true;
    // The mount points whose (path, inode) multiset differs.
    const auto less = [&](const NsfsMount& a, const NsfsMount& b) {
        return key(a) < key(b);
    };
    auto before = text_, after = next;
    std::sort(before.begin(), before.end(), less);
    std::sort(after.begin(), after.end(), less);
    std::vector<NsfsMount> differ;
    std::set_symmetric_difference(before.begin(), before.end(), after.begin(), after.end(),
                                  std::back_inserter(differ), less);
    for (auto& [path, point] : paths_)
        point.mounts = 0;
    for (const auto& m : next)
        ++point_at(m.path)->second.mounts;
    for (const auto& m : differ) { // (a point about to be forgotten keeps its block here)
        auto block = path_block(m.path);
        changed_paths_.push_back(block.empty() ? Strings{m.path} : std::move(block));
    }
    sort_unique_paths(changed_paths_);
    std::erase_if(paths_,
                  [](const auto& p) { return p.second.mounts == 0 && p.second.cookie == 0; });
    text_ = std::move(next);
    return true;
}

std::optional<std::uint32_t> MountTable::mount_count() const {
    MntNsInfo info;
    if (!mnt_ns_ || ::ioctl(mnt_ns_.get(), kNsMntGetInfo, &info) < 0)
        return std::nullopt; // before 6.12
    return info.nr_mounts;
}

// Every mount id of the namespace above `after` (0: all), ascending.
bool MountTable::list_ids(std::uint64_t after) {
    ids_.clear();
    MntIdReq req;
    req.mnt_id = kListRoot;
    req.param = after;
    for (std::size_t chunk = after == 0 ? kIdsPerCall : kNewIdsPerCall;; chunk = kIdsPerCall) {
        const auto at = ids_.size();
        ids_.resize(at + chunk);
        const long n = ::syscall(kListmount, &req, ids_.data() + at, chunk, 0);
        if (n < 0) {
            ids_.clear();
            return false;
        }
        ids_.resize(at + static_cast<std::size_t>(n));
        if (static_cast<std::size_t>(n) < chunk)
            break;
        req.param = ids_.back(); // the next call lists the ids after it
    }
    if (!std::is_sorted(ids_.begin(), ids_.end())) // they are (the kernel walks a sorted tree)
        std::sort(ids_.begin(), ids_.end());
    return true;
}

// The nsfs mount of a network namespace that `id` is, if it is one. False: the mount is gone.
bool MountTable::stat_id(std::uint64_t id, std::optional<Stat>& out) {
    out.reset();
    if (stat_buf_.empty())
        stat_buf_.resize(4096);
    MntIdReq req;
    req.mnt_id = id;
    req.param = kStatRoot | kStatPoint | kStatFsType;
    while (::syscall(kStatmount, &req, stat_buf_.data(), stat_buf_.size(), 0) < 0) {
        if (errno != EOVERFLOW || stat_buf_.size() >= kMaxStatBytes)
            return errno != ENOENT;
        stat_buf_.resize(stat_buf_.size() * 2);
    }
    StatMount sm;
    std::copy_n(stat_buf_.data(), sizeof sm, reinterpret_cast<char*>(&sm));
    const auto str = [&](std::uint32_t offset) -> std::string_view {
        const std::size_t at = sizeof(StatMount) + offset;
        if (at >= stat_buf_.size() || at >= sm.size)
            return {};
        const auto* begin = stat_buf_.data() + at;
        return {begin, ::strnlen(begin, std::min<std::size_t>(sm.size, stat_buf_.size()) - at)};
    };
    const auto wanted = kStatRoot | kStatPoint | kStatFsType;
    if ((sm.mask & wanted) != wanted || str(sm.fs_type) != "nsfs")
        return true;
    if (const auto inode = net_root_inode(str(sm.mnt_root)))
        out = Stat{*inode, str(sm.mnt_point)};
    return true;
}

// Lists only the ids above the highest known (mount ids are never reused and grow): true when
// the count of mounts says nothing else changed. The count is read before and after the
// listing; a removal could hide only behind another change inside that window, and every
// change wakes the mount watch for another reread, whose count then disagrees (our table
// keeps the removed mount) and lists everything.
bool MountTable::list_new() {
    const auto before = mount_count();
    if (!before || listed_.empty() || until_full_ <= 0 || !list_ids(listed_.back()))
        return false;
    const auto after = mount_count();
    return after == before && *before == listed_.size() + ids_.size();
}

bool MountTable::refresh_listmount(bool full) {
    if (!full && list_new()) {
        --until_full_;
        for (const auto id : ids_) {
            std::optional<Stat> m;
            if (!stat_id(id, m))
                continue; // unmounted already
            listed_.push_back(id);
            if (m)
                add(id, m->inode, m->path);
        }
        if (ids_.capacity() > kNewIdsPerCall)
            ids_ = {}; // a burst's scratch is not kept
        return true;
    }
    until_full_ = kIncrementalRereads;
    if (!list_ids(0))
        return false;
    // Both lists ascending: one merge finds the new ids (asked) and the gone ones (forgotten).
    std::vector<std::uint64_t> next;
    next.reserve(ids_.size());
    std::size_t j = 0;
    for (std::size_t i = 0; i < ids_.size() || j < listed_.size();) {
        if (j == listed_.size() || (i < ids_.size() && ids_[i] < listed_[j])) {
            std::optional<Stat> m;
            if (stat_id(ids_[i], m)) { // else unmounted already
                next.push_back(ids_[i]);
                if (m) // else another file system
                    add(ids_[i], m->inode, m->path);
            }
            ++i;
        } else if (i == ids_.size() || listed_[j] < ids_[i]) {
            if (const auto* listed = nsfs_.get(listed_[j]))
                remove(listed_[j], *listed);
            ++j;
        } else {
            next.push_back(ids_[i]);
            ++i, ++j;
        }
    }
    listed_ = std::move(next);
    ids_ = {}; // every id is in listed_ now: no full-sized scratch kept between rereads
    return true;
}

} // namespace nsidd::netns
