// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

#include "registry/registry.hpp"

namespace nsidd::mirror {

using registry::PeerState;

/// A row as it is served: the entry with what is known of its peer.
struct View : registry::Entry {
    registry::Identity peer;
    std::uint64_t leaking_since_usec = 0; ///< in a leak state: since when (else 0)
};

/// The engine's outbox: every change to the mirror as it is shown (each row's identity and
/// state as the engine decided them when it made the change), numbered, in the order made.
/// The engine appends; the daemon drains what is new to its Watch clients; the last `kept`
/// changes stay so that a client that reconnects can resume after the seq it last saw
/// (docs/design.md, "One way through").
///
/// Invariant: List at seq S equals every change up to S applied in order.
class Feed {
public:
    /// The registry's kinds of change, and Update: a row's identity or state changed (the
    /// engine's, never the registry's).
    enum class Kind : std::uint8_t { New, Del, Purge, Resync, Update };
    /// One change as shown.
    struct Item {
        std::uint64_t seq;
        Kind kind;
        registry::Observer observer;
        bool removed; ///< the row left its table (Del, Purge, or a Resync that dropped it)
        PeerState state;
        View entry;
    };
    /// Changes kept for Watch(since): a client that reconnects within this many changes
    /// misses nothing and need not read the tables again.
    static constexpr std::size_t kKept = 2048;

    /// `first_seq`: the seq the first change gets, minus one. Sequences of different runs must
    /// not overlap (the daemon starts at its start time in microseconds), so that a client
    /// resuming with a seq of an earlier run is told to read everything again.
    explicit Feed(std::uint64_t first_seq = 0, std::size_t kept = kKept)
        : seq_(first_seq), first_seq_(first_seq), drained_(first_seq), kept_max_(kept) {}

    /// Numbers a change as shown and appends it.
    void push(Kind kind, registry::Observer observer, View shown, bool removed, PeerState state);

    /// The last change's seq (first_seq when there was none).
    std::uint64_t seq() const noexcept { return seq_; }
    /// The last drained change's seq.
    std::uint64_t drained_seq() const noexcept { return drained_; }
    bool pending() const noexcept { return drained_ != seq_; }

    /// Calls fn(item) for each change not drained yet, in order; then keeps only the last
    /// `kept` (what is pending is kept whatever its number, until it is drained).
    template <typename Fn> void drain(Fn&& fn) {
        for (auto it = items_.end() - static_cast<std::ptrdiff_t>(seq_ - drained_);
             it != items_.end(); ++it)
            fn(*it);
        drained_ = seq_;
        trim();
    }

    /// Forgets the drained changes kept: no client can ask to resume before the next one (the
    /// start-up's changes, made before any client could connect).
    void forget_drained() {
        while (!items_.empty() && items_.front().seq <= drained_)
            items_.pop_front();
        items_.shrink_to_fit();
    }

    /// Whether every drained change after `since` is still kept (and `since` is of this run):
    /// then for_each_after(since) gives them all.
    bool resumable(std::uint64_t since) const noexcept;
    /// Calls fn(item) for each drained change after `since`, in order.
    template <typename Fn> void for_each_after(std::uint64_t since, Fn&& fn) const {
        for (const auto& item : items_) {
            if (item.seq > drained_)
                break;
            if (item.seq > since)
                fn(item);
        }
    }

private:
    void trim();

    std::uint64_t seq_;
    std::uint64_t first_seq_;
    std::uint64_t drained_;
    std::size_t kept_max_;
    std::deque<Item> items_; // the last kept_max_ drained ones and all pending, oldest first
};

/// "new", "del", "purge", "resync", "update".
const char* to_string(Feed::Kind kind) noexcept;

} // namespace nsidd::mirror
