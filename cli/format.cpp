// SPDX-License-Identifier: LGPL-2.1-or-later
// How nsidctl shows what nsidd answers: cells, ages, holders and owners in a few characters.
#include "cli/format.hpp"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <ctime>

#include <fnmatch.h>

#include "util/runtimes.hpp"
#include "util/time.hpp"

namespace nsidctl {

// A value for a table cell. Strings are printed escaped (\n, \t, \\, \xHH for other control
// bytes, and spaces as \x20): a namespace name can hold anything but '/' and NUL, and must not
// move the terminal's cursor or split a row.
std::string cell(const Json& v) {
    if (v.is_null())
        return "-";
    if (!v.is_string())
        return v.dump();
    std::string out;
    for (const unsigned char c : v.get<std::string>()) {
        if (c == '\n')
            out += "\\n";
        else if (c == '\t')
            out += "\\t";
        else if (c == '\\')
            out += "\\\\";
        else if (c < 0x20 || c == 0x7f || c == ' ') {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        } else
            out += static_cast<char>(c);
    }
    return out;
}

std::string plural(std::size_t n, const char* one, const char* many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
}

// Parses an RFC 3339 time as nsidd writes it, for relative display.
std::uint64_t parse_time(const std::string& s) {
    std::tm tm{};
    unsigned usec = 0;
    if (std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d.%uZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                    &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &usec) < 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<std::uint64_t>(timegm(&tm)) * 1000000u + usec;
}

std::string age(const Json& v) {
    if (!v.is_string())
        return "-";
    const auto t = parse_time(v.get<std::string>());
    return t ? nsidd::format_age(t, nsidd::realtime_usec()) : v.get<std::string>();
}

std::string peer_label(const Json& peer, bool former) {
    for (const char* key : {"names", "former_names"}) {
        if (!former && key[0] == 'f')
            break;
        const auto names = peer.find(key);
        if (names == peer.end() || !names->is_array() || names->empty())
            continue;
        std::string out;
        for (const auto& n : *names)
            out += (out.empty() ? "" : ",") + cell(n);
        return out;
    }
    if (peer.contains("pid") && !peer["pid"].is_null())
        return "pid " + cell(peer["pid"]);
    return "-";
}

// At most `n` characters of a cell (table columns stay within 80 in all); "~" marks a cut.
std::size_t columns(std::string_view text) {
    // UTF-8: every byte but a continuation byte (10xxxxxx) starts a character.
    return static_cast<std::size_t>(
        std::count_if(text.begin(), text.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

std::string fit(std::string text, std::size_t n) {
    if (columns(text) <= n)
        return text;
    std::size_t end = 0;
    for (std::size_t kept = 0; end < text.size(); ++end)
        if ((text[end] & 0xC0) != 0x80 && kept++ == n - 1)
            break; // the start of the n-th character: cut before it
    return text.substr(0, end) + "~";
}

const Json& object_at(const Json& j, const char* key) {
    static const Json empty = Json::object();
    const auto it = j.find(key);
    return it != j.end() && it->is_object() ? *it : empty;
}

// What holds the peer, briefly: its processes (one named), else its first bind mount.
std::string held_by(const Json& peer) {
    const Json& h = object_at(peer, "holders");
    const auto processes = h.value("processes", Json(0));
    if (processes.is_number_unsigned() && processes.get<std::uint64_t>() > 0) {
        std::string out = plural(processes.get<std::uint64_t>(), "proc", "procs");
        if (h.contains("pid") && !h["pid"].is_null())
            out += " " +
                   (h.contains("comm") && h["comm"].is_string() ? cell(h["comm"]) + "/" : "") +
                   cell(h["pid"]);
        return out;
    }
    const auto mounts = h.find("mounts");
    if (mounts != h.end() && mounts->is_array() && !mounts->empty())
        return cell((*mounts)[0]) +
               (mounts->size() > 1 ? " +" + std::to_string(mounts->size() - 1) : std::string());
    return "-";
}

// Whose the peer is, briefly: runtime and short container (else sandbox) id, else the pod, else
// the unit.
std::string owned_by(const Json& peer) {
    const Json& o = object_at(peer, "owner");
    const auto text = [&o](const char* key) {
        return o.contains(key) && o[key].is_string() ? cell(o[key]) : std::string();
    };
    auto container = text("container");
    if (container.empty())
        container = text("sandbox"); // all its mount point says
    if (!container.empty()) {
        const auto runtime = text("runtime");
        return (runtime.empty() ? "" : runtime + ":") + container.substr(0, 12);
    }
    if (const auto pod = text("pod_uid"); !pod.empty())
        return "pod:" + pod.substr(0, 8);
    const auto unit = text("unit");
    return unit.empty() ? "-" : unit;
}

Json state_name(const Json& wire) {
    const auto state = wire.is_string() ? parse_peer_state(wire.get<std::string>()) : std::nullopt;
    return state ? Json(to_string(*state)) : wire;
}

bool Filter::matches(const Json& e) const {
    if (!state.empty() && state_name(e.value("state", Json(nullptr))) != Json(state))
        return false;
    const Json peer = e.value("peer", Json::object());
    if (!name.empty()) {
        const auto names = peer.find("names");
        if (names == peer.end() || !names->is_array() ||
            std::none_of(names->begin(), names->end(), [this](const Json& n) {
                return n.is_string() &&
                       ::fnmatch(name.c_str(), n.get<std::string>().c_str(), 0) == 0;
            }))
            return false;
    }
    if (!owner.empty()) {
        const Json& o = object_at(peer, "owner");
        if (std::none_of(o.begin(), o.end(), [this](const Json& v) {
                return v.is_string() && v.get<std::string>().find(owner) != std::string::npos;
            }))
            return false;
    }
    return true;
}

std::string leak_holder(PeerState state, const Json& peer) {
    const Json& h = object_at(peer, "holders");
    if (state == PeerState::FdHeld) {
        const auto fds = h.find("fds");
        if (fds != h.end() && fds->is_array() && !fds->empty()) {
            const Json& f = (*fds)[0];
            return "pid " + cell(f.value("pid", Json(nullptr))) + " (" +
                   cell(f.value("comm", Json(nullptr))) + ") " +
                   (f.value("kind", "") == "socket" ? "socket fd " : "fd ") +
                   cell(f.value("fd", Json(nullptr)));
        }
    }
    if (state == PeerState::StaleMount)
        return held_by(peer);
    return "the kernel";
}

// `word` quoted for a POSIX shell when it needs it.
std::string shell_quote(const std::string& word) {
    if (!word.empty() &&
        word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789/._-:@%+=,") == std::string::npos)
        return word;
    std::string out = "'";
    for (const char c : word)
        out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

namespace {

// The runtime whose path `path` is: its words on what happened and what it offers
// (util/runtimes.hpp), naming the container where the owner says which.
std::string runtime_advice(const std::string& path, const Json& peer) {
    const auto* runtime = nsidd::runtime_of_path(path);
    std::string advice(runtime != nullptr && !runtime->advice.empty()
                           ? runtime->advice
                           : "nothing but this mount holds it; if it is not wanted");
    const Json& o = object_at(peer, "owner");
    const auto container = o.value("container", Json(nullptr));
    const auto at = advice.find("{container}");
    if (at != std::string::npos)
        advice.replace(at, 11,
                       container.is_string() ? shell_quote(container.get<std::string>())
                                             : std::string("CONTAINER"));
    return advice + (runtime != nullptr && runtime->leak_prone ? "; else" : "");
}

} // namespace

std::string leak_command(PeerState state, const Json& peer) {
    if (state != PeerState::StaleMount)
        return {};
    // One command, on the host's own mount point where there is one: unmounting it there
    // takes its propagated copies in other mount namespaces with it. rm -f: the runtime may
    // have removed the file already (the copy of an agent kept the namespace).
    std::string host, other;
    for (const auto& m : object_at(peer, "holders").value("mounts", Json::array())) {
        const auto path = m.is_string() ? m.get<std::string>() : std::string();
        if (path.rfind("/proc/", 0) != 0 && host.empty())
            host = path;
        else if (path.rfind("/proc/", 0) == 0 && other.empty())
            other = path;
    }
    if (!host.empty()) {
        if (host.rfind("/run/netns/", 0) == 0 && host.find('/', 11) == std::string::npos)
            return "ip netns del " + shell_quote(host.substr(11)); // umount and rm, as ip does
        return "umount " + shell_quote(host) + " && rm -f " + shell_quote(host);
    }
    // Only in another mount namespace: /proc/PID/root/PATH.
    const auto root = other.find("/root/");
    if (root == std::string::npos)
        return {};
    const auto pid = other.substr(6, root - 6);
    const auto path = other.substr(root + 5);
    // --root: PATH is as that process sees it (its root, which need not be its mount
    // namespace's: a chroot, a container's pivot_root).
    return "nsenter -t " + pid + " -m --root umount " + shell_quote(path) + " && nsenter -t " +
           pid + " -m --root rm -f " + shell_quote(path);
}

// Who has the copy that alone holds a peer (its mounts are all in other mount namespaces):
// "held by a copy in the mount namespace of pid P (comm, owner); " or "".
std::string copy_holder(const Json& peer) {
    const Json& h = object_at(peer, "holders");
    const auto mounts = h.value("mounts", Json::array());
    const auto copies = h.value("copies", Json::array());
    if (copies.empty() || mounts.size() != copies.size() || !copies[0].is_object())
        return {};
    Json as_peer = {{"owner", copies[0].value("owner", Json(nullptr))}};
    const auto owner = owned_by(as_peer);
    return "held by a copy in the mount namespace of pid " +
           cell(copies[0].value("pid", Json(nullptr))) + " (" +
           cell(copies[0].value("comm", Json(nullptr))) + (owner == "-" ? "" : ", " + owner) +
           "); ";
}

std::string leak_action(PeerState state, const Json& peer) {
    if (state == PeerState::StaleMount) {
        const auto command = leak_command(state, peer);
        std::string path;
        for (const auto& m : object_at(peer, "holders").value("mounts", Json::array()))
            if (path.empty() && m.is_string())
                path = m.get<std::string>();
        return copy_holder(peer) + runtime_advice(path, peer) + ": " +
               (command.empty() ? "unmount it" : command);
    }
    if (state == PeerState::FdHeld)
        return "a process keeps an fd to it: " + leak_holder(state, peer) +
               "; fix or restart that process (ls -l /proc/PID/fd shows it)";
    return "nothing visible holds it: a device or socket left in it keeps it in the kernel "
           "(dmesg: \"unregister_netdevice: waiting for\"); find the driver or service "
           "that created it";
}

std::string watch_line(const Json& j) {
    const Json e = j.value("entry", Json::object());
    auto kind = cell(j.value("kind", Json()));
    kind.resize(std::max<std::size_t>(kind.size(), 6), ' ');
    return cell(j.value("seq", Json())) + " " + kind + " " +
           (j.value("removed", false) ? "-" : "+") + " observer " +
           cell(j.value("observer", Json())) + " nsid " + cell(e.value("nsid", Json())) + " peer " +
           peer_label(e.value("peer", Json::object())) + " " +
           cell(state_name(e.value("state", Json())));
}

Json cli_entry(const Json& e) {
    Json out = Json::object();
    out["nsid"] = e.value("nsid", Json(nullptr));
    out["current-nsid"] = e.value("current_nsid", Json(nullptr));
    const Json peer = e.value("peer", Json::object());
    if (peer.contains("names") && peer["names"].is_array() && !peer["names"].empty())
        out["name"] = peer["names"][0];
    out["peer"] = peer;
    out["state"] = state_name(e.value("state", Json(nullptr)));
    out["since"] = e.value("since", Json(nullptr));
    out["leaking-since"] = e.value("leaking_since", Json(nullptr));
    out["source"] = e.value("source", Json(nullptr));
    return out;
}

void Leaks::add(const Json& e) {
    const Json wire = e.value("state", Json(nullptr));
    const auto how = wire.is_string() ? parse_peer_state(wire.get<std::string>()) : std::nullopt;
    if (!how || !is_leak(*how))
        return;
    const Json peer = e.value("peer", Json::object());
    Json out = cli_entry(e);
    out["action"] = leak_action(*how, peer);
    if (const auto command = leak_command(*how, peer); !command.empty())
        out["command"] = command;
    found.push_back(out);
    rows.push_back({cell(e.value("nsid", Json(nullptr))), to_string(*how),
                    fit(leak_holder(*how, peer), 24), fit(owned_by(peer), 16),
                    age(e.value("leaking_since", Json()))});
}

void Leaks::add_dangling(const Json& name) {
    const std::string path = "/run/netns/" + (name.is_string() ? name.get<std::string>() : "");
    const auto command = "rm " + shell_quote(path);
    found.push_back({{"state", "dangling"},
                     {"dangling-name", name},
                     {"path", path},
                     {"action", "no namespace is mounted there: " + command},
                     {"command", command}});
    rows.push_back({"-", "dangling", fit(cell(Json(path)), 24), "-", "-"});
}

std::string Leaks::label(const Json& f) {
    if (f.contains("dangling-name"))
        return "name " + cell(f["dangling-name"]);
    if (f["nsid"].is_null())
        return "cookie " + cell(f["peer"].value("cookie", Json(nullptr)));
    return "nsid " + cell(f["nsid"]);
}

void print_table(bool legend, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::size_t> width(header.size());
    for (std::size_t i = 0; i < header.size(); ++i)
        width[i] = columns(header[i]);
    for (const auto& r : rows)
        for (std::size_t i = 0; i < r.size(); ++i)
            width[i] = std::max(width[i], columns(r[i]));
    auto line = [&](const std::vector<std::string>& r) {
        std::string out;
        for (std::size_t i = 0; i < r.size(); ++i) {
            out += r[i];
            if (i + 1 < r.size())
                out += std::string(width[i] - columns(r[i]) + 2, ' ');
        }
        std::cout << out << '\n';
    };
    if (legend)
        line(header);
    for (const auto& r : rows)
        line(r);
}

std::string describe_error(const nsidd::varlink::Reply& reply) {
    const auto& p = reply.parameters;
    if (reply.error == "io.nsidd.Registry.NoSuchObserver")
        return reply.error + ": no table for observer " + cell(p.value("observer", Json(nullptr))) +
               " (nsidctl graph lists the tables; in self scope there is only self)";
    if (reply.error == "io.nsidd.Registry.PermissionDenied")
        return reply.error + ": resync and reload are for root";
    if (reply.error == "io.nsidd.Registry.InvalidConfiguration")
        return reply.error +
               ": the configuration was not reloaded: " + cell(p.value("message", Json(nullptr)));
    return reply.error +
           (p.empty() ? "" : " " + p.dump(-1, ' ', false, Json::error_handler_t::replace));
}

} // namespace nsidctl
