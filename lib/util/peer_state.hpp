// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace nsidd {

/// What holds a peer alive (docs/design.md, "Peer states"): decided by the engine, shown on the
/// wire, by nsidctl, in metrics and in the journal, each spelling from the one table below.
enum class PeerState : std::uint8_t { Active, Mounted, StaleMount, FdHeld, Pinned, Unknown, Count };
inline constexpr std::size_t kPeerStates = static_cast<std::size_t>(PeerState::Count);

struct PeerStateNames {
    PeerState state;
    /// As people, metrics labels and the journal spell it: "stale-mount".
    const char* name;
    /// As the Varlink interface does (an enum value holds no '-'): "stale_mount".
    const char* wire;
    /// A leak: nothing but a stale mount, another process's fd, or the kernel holds it.
    bool leak;
};

inline constexpr std::array<PeerStateNames, kPeerStates> kPeerStateNames{{
    {PeerState::Active, "active", "active", false},
    {PeerState::Mounted, "mounted", "mounted", false},
    {PeerState::StaleMount, "stale-mount", "stale_mount", true},
    {PeerState::FdHeld, "fd-held", "fd_held", true},
    {PeerState::Pinned, "pinned", "pinned", true},
    {PeerState::Unknown, "unknown", "unknown", false},
}};

constexpr const PeerStateNames& names_of(PeerState state) noexcept {
    return kPeerStateNames[state < PeerState::Count ? static_cast<std::size_t>(state)
                                                    : static_cast<std::size_t>(PeerState::Unknown)];
}
/// "active", "mounted", "stale-mount", "fd-held", "pinned", "unknown".
constexpr const char* to_string(PeerState state) noexcept {
    return names_of(state).name;
}
/// "active", "mounted", "stale_mount", "fd_held", "pinned", "unknown".
constexpr const char* wire_name(PeerState state) noexcept {
    return names_of(state).wire;
}
constexpr bool is_leak(PeerState state) noexcept {
    return names_of(state).leak;
}
/// The state either spelling names; nullopt for none.
constexpr std::optional<PeerState> parse_peer_state(std::string_view text) noexcept {
    for (const auto& n : kPeerStateNames)
        if (text == n.name || text == n.wire)
            return n.state;
    return std::nullopt;
}

} // namespace nsidd
