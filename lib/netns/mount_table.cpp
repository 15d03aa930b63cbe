// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/mount_table.hpp"

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <tuple>

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
// A mount point is at most PATH_MAX; the reply grows to this if ever needed.
constexpr std::size_t kMaxStatBytes = 64 * 1024;
// The first rereads are checked against mountinfo; a difference that persists means the
// kernel's listmount does not list what mountinfo shows (early 6.8 semantics): fall back.
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

MountTable::MountTable(std::string mountinfo, bool listmount)
    : mountinfo_(std::move(mountinfo)), listmount_(listmount), checks_left_(kChecks) {}

bool MountTable::refresh() {
    if (!listmount_)
        return refresh_mountinfo();
    if (!refresh_listmount()) {
        listmount_ = false; // ENOSYS, or refused: the text it is
        known_.clear();
        return refresh_mountinfo();
    }
    if (checks_left_ > 0) {
        if (auto text = read_file(mountinfo_)) {
            if (same(mounts_, parse_nsfs_mounts(*text)))
                checks_left_ = 0;
            else if (--checks_left_ == 0)
                listmount_ = false, known_.clear();
        }
    }
    return true;
}

bool MountTable::refresh_mountinfo() {
    const auto text = read_file(mountinfo_);
    if (!text)
        return false;
    auto mounts = parse_nsfs_mounts(*text);
    changed_ = !std::equal(mounts.begin(), mounts.end(), mounts_.begin(), mounts_.end(),
                           [](const NsfsMount& a, const NsfsMount& b) {
                               return a.inode == b.inode && a.path == b.path;
                           });
    if (changed_)
        mounts_ = std::move(mounts);
    return true;
}

// Every mount id of the namespace, ascending (the order mounts were made in).
bool MountTable::list_ids() {
    ids_.clear();
    MntIdReq req;
    req.mnt_id = kListRoot;
    for (;;) {
        const auto at = ids_.size();
        ids_.resize(at + kIdsPerCall);
        const long n = ::syscall(kListmount, &req, ids_.data() + at, kIdsPerCall, 0);
        if (n < 0) {
            ids_.clear();
            return false;
        }
        ids_.resize(at + static_cast<std::size_t>(n));
        if (static_cast<std::size_t>(n) < kIdsPerCall)
            return true;
        req.param = ids_.back(); // the next call lists the ids after it
    }
}

// The nsfs mount of a network namespace that `id` is, if it is one. False: the mount is gone.
bool MountTable::stat_id(std::uint64_t id, std::optional<NsfsMount>& out) {
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
        out = NsfsMount{*inode, std::string(str(sm.mnt_point))};
    return true;
}

bool MountTable::refresh_listmount() {
    if (!list_ids())
        return false;
    changed_ = false;
    std::unordered_map<std::uint64_t, std::optional<NsfsMount>> next;
    next.reserve(ids_.size());
    for (const auto id : ids_) {
        if (auto it = known_.find(id); it != known_.end()) {
            next.emplace(id, std::move(it->second));
            known_.erase(it);
            continue;
        }
        std::optional<NsfsMount> m;
        if (!stat_id(id, m))
            continue; // unmounted since it was listed
        changed_ = changed_ || m.has_value();
        next.emplace(id, std::move(m));
    }
    for (const auto& [id, m] : known_)
        changed_ = changed_ || m.has_value(); // unmounted
    known_ = std::move(next);
    if (changed_) {
        mounts_.clear();
        for (const auto id : ids_)
            if (const auto it = known_.find(id); it != known_.end() && it->second)
                mounts_.push_back(*it->second);
    }
    return true;
}

} // namespace nsidd::netns
