// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <string>

#include "mirror/engine.hpp"
#include "registry/registry.hpp"
#include "varlink/protocol.hpp"

namespace nsidd::daemon {

/// The io.nsidd.Registry interface description (the .varlink file, embedded at build time).
extern const char kInterfaceDescription[];
inline constexpr std::string_view kInterface = "io.nsidd.Registry";
inline constexpr std::string_view kNoSuchObserver = "io.nsidd.Registry.NoSuchObserver";
inline constexpr std::string_view kPermissionDenied = "io.nsidd.Registry.PermissionDenied";
inline constexpr std::string_view kWatcherTooSlow = "io.nsidd.Registry.WatcherTooSlow";
inline constexpr std::string_view kInvalidConfiguration = "io.nsidd.Registry.InvalidConfiguration";

/// "self" or the observer's nsid in decimal.
std::string observer_name(registry::Observer observer);
/// A namespace without an id in self's table (Engine::unlisted()), as the interface's
/// Namespace.
varlink::Json to_json(const mirror::Engine::Unlisted& ns);
/// A row as the interface's Entry describes it; unknown parts are null or [].
/// `state`: the peer's PeerState name.
varlink::Json to_json(const mirror::View& entry, PeerState state);
varlink::Json to_json(const registry::Death& death);
/// One Watch reply.
varlink::Json to_json(const mirror::Feed::Item& item);

} // namespace nsidd::daemon
