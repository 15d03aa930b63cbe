// SPDX-License-Identifier: LGPL-2.1-or-later
// The outbox (feed.hpp), and how the engine shows each change it puts there.
#include "mirror/feed.hpp"

#include <algorithm>
#include <unordered_map>

#include "mirror/engine.hpp"

namespace nsidd::mirror {

void Feed::push(Kind kind, registry::Observer observer, View shown, bool removed, PeerState state) {
    items_.push_back(Item{++seq_, kind, observer, removed, state, std::move(shown)});
}

const char* to_string(Feed::Kind kind) noexcept {
    switch (kind) {
    case Feed::Kind::New:
        return "new";
    case Feed::Kind::Del:
        return "del";
    case Feed::Kind::Purge:
        return "purge";
    case Feed::Kind::Resync:
        return "resync";
    case Feed::Kind::Update:
        return "update";
    }
    return "unknown";
}

bool Feed::resumable(std::uint64_t since) const noexcept {
    if (since < first_seq_ || since > drained_)
        return false;
    return since == drained_ || (!items_.empty() && items_.front().seq <= since + 1);
}

void Feed::trim() {
    while (items_.size() > kept_max_ && items_.front().seq <= drained_)
        items_.pop_front();
}

static_assert(static_cast<int>(Feed::Kind::Resync) ==
                  static_cast<int>(registry::ChangeKind::Resync),
              "the feed's first kinds are the registry's, in the same order");

void Engine::show(registry::Changes&& changes) {
    using registry::ChangeKind;
    static const Peer unknown{};
    // Rows of other tables purged with a peer show the identity self's row for it had; that
    // row has left, and what was known of its peer waits in departed_ until now.
    // (Only where some change is of another table: self scope never needs them.)
    std::unordered_map<Nsid, const registry::Identity*> dead;
    if (std::any_of(changes.begin(), changes.end(),
                    [](const auto& c) { return c.observer != registry::kSelf; }))
        for (const auto& [nsid, since, peer] : departed_)
            dead[nsid] = &peer.identity;
    std::size_t next = 0; // where in departed_ the next row that left is
    for (const auto& c : changes) {
        const bool gone = c.kind == ChangeKind::Del || c.kind == ChangeKind::Purge || c.removed;
        // A row of self's table that left it shows what was known when it left (its id may
        // name a new peer already).
        const Peer* left = nullptr;
        if (gone && c.observer == registry::kSelf) {
            left = departed(c.entry.nsid, c.entry.since_usec, next);
            if (left == nullptr)
                left = &unknown;
        }
        // A row that left its table shows the last state decided for it, as History does
        // (not the unknown of its last moments, when its holder had gone).
        const auto state = left != nullptr && left->decided != PeerState::Unknown
                               ? left->decided
                               : this->state(c.observer, c.entry);
        auto shown = view(c.observer, c.entry, left);
        if (gone && c.observer != registry::kSelf && shown.current_nsid && !shown.peer.cookie &&
            !shown.peer.inode)
            if (const auto d = dead.find(*shown.current_nsid); d != dead.end())
                shown.peer = *d->second;
        // (The registry's kinds are the feed's first ones, in the same order.)
        feed_.push(static_cast<Feed::Kind>(c.kind), c.observer, std::move(shown), gone, state);
    }
    departed_.clear();
}

} // namespace nsidd::mirror
