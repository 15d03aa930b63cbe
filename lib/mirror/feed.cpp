// SPDX-License-Identifier: LGPL-2.1-or-later
// The outbox (feed.hpp), and how the engine shows each change it puts there.
#include "mirror/feed.hpp"

#include <algorithm>
#include <unordered_map>

#include "mirror/engine.hpp"

namespace nsidd::mirror {

void Feed::push(Kind kind, registry::Observer observer, registry::View shown, bool removed,
                PeerState state) {
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

void Engine::show(std::vector<registry::Change>&& changes) {
    using registry::ChangeKind;
    // Rows of other tables purged with a peer show the identity self's row for it had; that
    // row is gone by now, but its removal (which carries the identity) is in the same batch.
    // (Only where some change is of another table: self scope never needs them.)
    std::unordered_map<Nsid, const registry::Identity*> dead;
    if (std::any_of(changes.begin(), changes.end(),
                    [](const auto& c) { return c.observer != registry::kSelf; }))
        for (const auto& c : changes)
            if (c.observer == registry::kSelf && c.peer)
                dead[c.entry.nsid] = &*c.peer;
    for (auto& c : changes) {
        // A row that left its table shows the last state decided for it, as History does
        // (not the unknown of its last moments, when its holder had gone).
        const bool gone = c.kind == ChangeKind::Del || c.kind == ChangeKind::Purge || c.removed;
        const auto state = gone && c.entry.decided != PeerState::Unknown
                               ? c.entry.decided
                               : this->state(c.observer, c.entry);
        // A row of self's table that left it shows the identity its change carries (its id may
        // name a new peer in the registry already).
        auto shown =
            view(c.observer, c.entry, gone && c.observer == registry::kSelf ? &*c.peer : nullptr);
        if (gone && c.observer != registry::kSelf && shown.current_nsid && !shown.peer.cookie &&
            !shown.peer.inode)
            if (const auto d = dead.find(*shown.current_nsid); d != dead.end())
                shown.peer = *d->second;
        // (The registry's kinds are the feed's first ones, in the same order.)
        feed_.push(static_cast<Feed::Kind>(c.kind), c.observer, std::move(shown), gone, state);
    }
}

} // namespace nsidd::mirror
