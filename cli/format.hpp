// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/peer_state.hpp"
#include "varlink/protocol.hpp"

namespace nsidctl {

using nsidd::is_leak;
using nsidd::parse_peer_state;
using nsidd::PeerState;
using nsidd::to_string;
using nsidd::varlink::Json;

/// A value for a table cell: "-" for null; strings escaped (\n, \t, \\, \xHH for other
/// control bytes and spaces), so that a name cannot move the cursor or split a row.
std::string cell(const Json& v);
/// "1 entry", "2 entries".
std::string plural(std::size_t n, const char* one, const char* many);
/// An RFC 3339 time as nsidd writes it, in microseconds (0: not one).
std::uint64_t parse_time(const std::string& s);
/// How long ago an RFC 3339 time was ("3m ago"); "-" for null.
std::string age(const Json& v);
/// At most `n` characters; "~" marks a cut.
std::string fit(std::string text, std::size_t n);
/// Terminal columns of UTF-8 text (one per character).
std::size_t columns(std::string_view text);
/// The object under `key`, or an empty one.
const Json& object_at(const Json& j, const char* key);
/// What holds a peer, briefly: its processes (one named), else its first bind mount.
std::string held_by(const Json& peer);
/// Whose a peer is, briefly: runtime and short container (else sandbox) id, else the pod, else
/// the unit.
std::string owned_by(const Json& peer);
/// A state as people, metrics and the journal spell it: the wire's stale_mount and fd_held are
/// stale-mount and fd-held.
Json state_name(const Json& wire);
/// `nsidctl list`'s filters; empty ones let everything through.
struct Filter {
    std::string state; ///< as people spell it: stale-mount, fd-held
    std::string name;  ///< a glob one of the peer's names must match
    std::string owner; ///< text one of the owner's parts must contain
    bool matches(const Json& entry) const;
};
/// What holds a leaking peer, for `nsidctl leaks`.
std::string leak_holder(PeerState state, const Json& peer);
/// What an operator can do about a leaking peer.
std::string leak_action(PeerState state, const Json& peer);
/// The one shell command that frees a stale-mount leak (its mount gone, nothing holds the
/// namespace), "" for other states.
std::string leak_command(PeerState state, const Json& peer);
/// `word` quoted for a POSIX shell where it needs it.
std::string shell_quote(const std::string& word);
/// A peer's names (else, with `former`, the names it had: a dead one's), else "pid N", else "-".
std::string peer_label(const Json& peer, bool former = false);
/// One Watch change as a line: seq, kind, + or -, observer, nsid, peer, state.
std::string watch_line(const Json& change);

/// The CLI's Entry: the wire Entry (or Namespace) with ip's spelling "current-nsid", plus
/// "name" (the peer's first /run/netns name) so that `nsidctl -j list` diffs against
/// `ip -j netns list-id`, and "leaking-since".
Json cli_entry(const Json& e);
/// What `nsidctl leaks` shows: for JSON the entries with their action and command, for the
/// table one row each (SINCE: how long it has leaked).
struct Leaks {
    Json found = Json::array();
    std::vector<std::vector<std::string>> rows;
    /// An Entry, or a Namespace without an id: kept when its state is a leak.
    void add(const Json& entry);
    /// A name under /run/netns that no namespace is mounted on.
    void add_dangling(const Json& name);
    /// How the legend names one of `found`: nsid, cookie (no id) or name (dangling).
    static std::string label(const Json& found);
};

/// Prints rows as aligned columns, with the header when `legend`.
void print_table(bool legend, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows);
/// What an error reply means, for a person.
std::string describe_error(const nsidd::varlink::Reply& reply);

} // namespace nsidctl
