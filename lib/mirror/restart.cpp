// SPDX-License-Identifier: LGPL-2.1-or-later
// What survives a restart in the same boot: the saved ids (the id cache) that spare the kernel
// most questions, each peer's first-seen time, and the deaths that happened while nsidd was
// down (docs/design.md, "History across restarts").
#include "mirror/engine.hpp"

#include <algorithm>

#include <sys/stat.h>

#include "util/file.hpp"

namespace nsidd::mirror {

netns::IdCacheOrigin Engine::origin() {
    if (boot_id_.empty()) {
        if (auto id = read_file(config_.roots.proc_dir + "/sys/kernel/random/boot_id", 64)) {
            boot_id_ = std::move(*id);
            while (!boot_id_.empty() && (boot_id_.back() == '\n' || boot_id_.back() == ' '))
                boot_id_.pop_back();
        }
    }
    return {boot_id_, catalog_.self_cookie()};
}

bool Engine::load_ids(const std::string& path) {
    auto key = origin();
    if (key.boot_id.empty() || key.self_cookie == 0)
        return false; // no NS_GET_ID: inodes are no key across a restart
    const auto text = read_file(path);
    if (!text)
        return false;
    auto cache = netns::parse_id_cache(*text, key);
    if (!cache)
        return false;
    catalog_.use_saved_ids(cache->ids, cache->mount_ids);
    catalog_.use_saved_evidence(std::move(cache->no_process_since_usec), std::move(cache->owners));
    cached_ids_ = std::move(cache->ids);
    first_seen_ = std::move(cache->first_seen_usec);
    saved_unheld_ = std::move(cache->unheld_since_usec);
    cache_saved_usec_ = cache->saved_usec;
    return true;
}

Result<void> Engine::save_ids(const std::string& path, bool now) {
    auto key = origin();
    if (key.boot_id.empty() || key.self_cookie == 0 ||
        (!now && catalog_.ids_version() == saved_ids_version_ &&
         evidence_version_ == saved_evidence_version_))
        return {};
    netns::IdCache cache;
    cache.ids = catalog_.saved_ids();
    cache.saved_usec = clock_.realtime();
    cache.mount_ids = catalog_.saved_mount_ids();
    const auto& rows = registry_.table(registry::kSelf)->rows;
    for (const auto& [nsid, known] : peers_) {
        const auto& p = known.identity;
        const auto* row = rows.get(nsid);
        if (row == nullptr || !p.cookie)
            continue;
        cache.ids.emplace(*p.cookie, nsid); // also those only an fd holds (no mount, no process)
        cache.first_seen_usec.emplace(
            *p.cookie, std::min(row->entry.since_usec, p.first_seen_usec.value_or(UINT64_MAX)));
        // What a verdict's clock runs from, and whose it is: a restart keeps both.
        if (const auto* ns = catalog_.by_nsid(nsid); ns != nullptr && ns->no_process_since_usec)
            cache.no_process_since_usec.emplace(*p.cookie, ns->no_process_since_usec);
        if (const auto* v = unheld_.get(nsid);
            v != nullptr && v->row_since == row->entry.since_usec)
            cache.unheld_since_usec.emplace(*p.cookie, v->unheld_since);
        if (p.owner)
            cache.owners.emplace(*p.cookie, *p.owner);
    }
    // Namespaces without an id: their evidence and owner (a leak in no table is still one).
    for (const auto& [cookie, ns] : catalog_.namespaces()) {
        if (ns.nsid || ns.cookie_is_inode || ns.inode == catalog_.self_inode() ||
            (!ns.no_process_since_usec && !ns.owner))
            continue;
        cache.first_seen_usec.emplace(cookie, ns.first_seen_usec);
        if (ns.no_process_since_usec)
            cache.no_process_since_usec.emplace(cookie, ns.no_process_since_usec);
        if (ns.owner)
            cache.owners.emplace(cookie, *ns.owner);
    }
    // Its directory is the service's RuntimeDirectory; run by hand, nsidd makes it.
    if (const auto slash = path.rfind('/'); slash != std::string::npos && slash > 0)
        ::mkdir(path.substr(0, slash).c_str(), 0755);
    auto written = write_file_atomic(path, netns::format_id_cache(key, cache), 0600);
    if (written) {
        saved_ids_version_ = catalog_.ids_version();
        saved_evidence_version_ = evidence_version_;
    }
    return written;
}

void Engine::find_deaths_while_down() {
    const auto& rows = registry_.table(registry::kSelf)->rows;
    for (const auto& [cookie, nsid] : cached_ids_) {
        const auto& had = peer(nsid).cookie;
        if (!rows.count(nsid))
            record_death_while_down(nsid, cookie); // a live peer keeps its id
        else if (!had)
            pending_down_.emplace(nsid, cookie);
        else if (*had != cookie)
            record_death_while_down(nsid, cookie); // its id names another peer now
    }
    // The file already says what the catalog knows now: no need to write it again.
    if (catalog_.saved_ids() == cached_ids_)
        saved_ids_version_ = catalog_.ids_version();
    cached_ids_.clear();
}

void Engine::record_death_while_down(Nsid nsid, std::uint64_t cookie) {
    registry::Death d;
    d.nsid = nsid;
    d.peer.cookie = cookie;
    const auto seen = first_seen_.find(cookie);
    d.since_usec = seen == first_seen_.end() ? 0 : seen->second;
    if (seen != first_seen_.end())
        first_seen_.erase(seen);
    d.died_usec = clock_.realtime();
    d.down_since_usec = std::max<std::uint64_t>(cache_saved_usec_, 1);
    registry_.record_death_while_down(std::move(d));
}

} // namespace nsidd::mirror
