// SPDX-License-Identifier: LGPL-2.1-or-later
#include "daemon/wire.hpp"

#include <algorithm>
#include <string>

#include "util/time.hpp"

namespace nsidd::daemon {
namespace {

template <typename T> varlink::Json or_null(const std::optional<T>& v) {
    return v ? varlink::Json(*v) : varlink::Json(nullptr);
}
template <typename T> varlink::Json or_null(Nonzero<T> v) {
    return or_null(v.optional());
}

varlink::Json owner_json(const Shared<Owner>& o) {
    if (!o)
        return nullptr;
    const auto text = [](const std::string& s) {
        return s.empty() ? varlink::Json(nullptr) : varlink::Json(s);
    };
    return {{"unit", text(o->unit)},
            {"runtime", text(o->runtime)},
            {"container", text(o->container)},
            {"pod_uid", text(o->pod_uid)},
            {"sandbox", text(o->sandbox)}};
}

varlink::Json fds_json(const std::vector<registry::FdHolder>& fds) {
    auto out = varlink::Json::array();
    for (const auto& f : fds)
        out.push_back(
            {{"pid", f.pid}, {"comm", f.comm}, {"fd", f.fd}, {"kind", f.socket ? "socket" : "ns"}});
    return out;
}

varlink::Json copies_json(const std::vector<CopyHolder>& copies) {
    auto out = varlink::Json::array();
    for (const auto& c : copies)
        out.push_back({{"path", c.path},
                       {"pid", c.pid},
                       {"comm", c.comm.empty() ? varlink::Json() : varlink::Json(c.comm)},
                       {"owner", owner_json(c.owner)}});
    return out;
}

varlink::Json mounts_json(const registry::Holders& h) {
    auto out = varlink::Json(h.mounts);
    for (const auto& m : h.other_mounts)
        out.push_back(m);
    return out;
}

varlink::Json peer_json(const registry::Identity& id) {
    const auto& h = id.holders;
    return {{"cookie", or_null(id.cookie)},
            {"inode", or_null(id.inode)},
            {"names", id.names},
            {"former_names", id.former_names},
            {"pid", or_null(id.pid)},
            {"holders",
             {{"processes", h.processes},
              {"pid", or_null(id.pid)},
              {"comm", h.comm->empty() ? varlink::Json(nullptr) : varlink::Json(*h.comm)},
              {"mounts", mounts_json(h)},
              {"also_in", h.also_in},
              {"copies", copies_json(*h.copies)},
              {"fds", fds_json(*h.fds)}}},
            {"owner", owner_json(id.owner)}};
}

} // namespace

std::string observer_name(registry::Observer observer) {
    return observer == registry::kSelf ? "self" : std::to_string(observer);
}

varlink::Json to_json(const mirror::View& e, PeerState state) {
    return {{"nsid", e.nsid},
            {"current_nsid", or_null(e.current_nsid)},
            {"peer", peer_json(e.peer)},
            {"state", wire_name(state)},
            {"since", format_iso8601(e.since_usec)},
            {"leaking_since", e.leaking_since_usec != 0
                                  ? varlink::Json(format_iso8601(e.leaking_since_usec))
                                  : varlink::Json()},
            {"source", registry::to_string(e.source)}};
}

varlink::Json to_json(const mirror::Engine::Unlisted& ns) {
    return {{"peer", peer_json(ns.peer)},
            {"state", wire_name(ns.state)},
            {"leaking_since", ns.leaking_since_usec != 0
                                  ? varlink::Json(format_iso8601(ns.leaking_since_usec))
                                  : varlink::Json()},
            {"since", format_iso8601(ns.first_seen_usec)}};
}

varlink::Json to_json(const registry::Death& d) {
    const bool known = d.since_usec != 0;
    return {{"nsid", d.nsid},
            {"peer", peer_json(d.peer)},
            {"since", known ? varlink::Json(format_iso8601(d.since_usec)) : varlink::Json()},
            {"died", format_iso8601(d.died_usec)},
            {"lifetime_usec", known && d.died_usec > d.since_usec ? d.died_usec - d.since_usec : 0},
            {"state",
             d.state == PeerState::Unknown ? varlink::Json() : varlink::Json(wire_name(d.state))},
            {"died_while_down", d.down_since_usec != 0},
            {"down_since", d.down_since_usec != 0 ? varlink::Json(format_iso8601(d.down_since_usec))
                                                  : varlink::Json()}};
}

varlink::Json to_json(const mirror::Feed::Item& item) {
    return {{"seq", item.seq},
            {"kind", mirror::to_string(item.kind)},
            {"observer", observer_name(item.observer)},
            {"entry", to_json(item.entry, item.state)},
            {"removed", item.removed}};
}

} // namespace nsidd::daemon
