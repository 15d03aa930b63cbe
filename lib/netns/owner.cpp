// SPDX-License-Identifier: LGPL-2.1-or-later
#include "netns/owner.hpp"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "util/runtimes.hpp"

namespace nsidd::netns {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

bool is_hex_id(std::string_view s) {
    return s.size() >= 12 && s.size() <= 128 && std::all_of(s.begin(), s.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

// The cgroup path the owner is read from.
std::optional<std::string_view> pick_path(std::string_view text) {
    std::optional<std::string_view> v2, v1_systemd, v1_other;
    while (!text.empty()) {
        const auto eol = std::min(text.find('\n'), text.size());
        const auto line = text.substr(0, eol);
        text.remove_prefix(std::min(eol + 1, text.size()));
        // ID:CONTROLLERS:PATH (the path may itself hold ':')
        const auto c1 = line.find(':');
        if (c1 == std::string_view::npos)
            continue;
        const auto c2 = line.find(':', c1 + 1);
        if (c2 == std::string_view::npos)
            continue;
        const auto id = line.substr(0, c1);
        const auto controllers = line.substr(c1 + 1, c2 - c1 - 1);
        auto path = line.substr(c2 + 1);
        if (path.empty() || path.front() != '/')
            continue;
        if (ends_with(path, " (deleted)"))
            path.remove_suffix(10);
        if (id == "0" && controllers.empty())
            v2 = path; // cgroup v2: the one hierarchy
        if (controllers == "name=systemd" && path != "/")
            v1_systemd = path;
        else if (!v1_other && path != "/")
            v1_other = path;
    }
    // Hybrid hierarchies list an unused v2 line at the root beside the v1 ones.
    if (v2 && (*v2 != "/" || (!v1_systemd && !v1_other)))
        return v2;
    return v1_systemd ? v1_systemd : v1_other;
}

std::vector<std::string_view> components(std::string_view path) {
    std::vector<std::string_view> out;
    while (!path.empty()) {
        const auto slash = std::min(path.find('/'), path.size());
        if (slash > 0)
            out.push_back(path.substr(0, slash));
        path.remove_prefix(std::min(slash + 1, path.size()));
    }
    return out;
}

// "kubepods-burstable-pod1a2b_3c4d.slice" or "pod1a2b-3c4d": the pod's UID, with dashes.
std::optional<std::string> pod_uid_of(std::string_view c) {
    if (ends_with(c, ".slice"))
        c.remove_suffix(6);
    const auto at = c.rfind("pod");
    if (at == std::string_view::npos || (at > 0 && c[at - 1] != '-'))
        return std::nullopt;
    std::string uid(c.substr(at + 3));
    std::replace(uid.begin(), uid.end(), '_', '-');
    if (uid.size() < 8 || !std::all_of(uid.begin(), uid.end(), [](char ch) {
            return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || ch == '-';
        }))
        return std::nullopt;
    return uid;
}

// systemd escapes '-' in a machine name as \x2d.
std::string unescape_machine(std::string_view name) {
    std::string out;
    for (std::size_t k = 0; k < name.size(); ++k) {
        if (name.substr(k, 4) == "\\x2d") {
            out.push_back('-');
            k += 3;
        } else {
            out.push_back(name[k]);
        }
    }
    return out;
}

// A unit component: the innermost one is the unit; some name the runtime and container.
void read_unit(std::string_view c, Owner& o) {
    o.unit = std::string(c);
    if (starts_with(c, "systemd-nspawn@") && ends_with(c, ".service")) {
        o.runtime = "systemd-nspawn"; // systemd-nspawn@NAME.service: the machine NAME
        o.container = unescape_machine(c.substr(15, c.size() - 15 - 8));
        return;
    }
    std::string container;
    if (const auto* runtime = runtime_of_scope(c, container)) {
        o.runtime = std::string(runtime->name);
        o.container = runtime->name == "systemd-nspawn" ? unescape_machine(container) : container;
    }
}

} // namespace

std::optional<Owner> parse_cgroup_owner(std::string_view text) {
    const auto path = pick_path(text);
    if (!path)
        return std::nullopt;
    const auto parts = components(*path);
    Owner o;
    bool kubepods = false;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const auto c = parts[i];
        if (starts_with(c, "kubepods"))
            kubepods = true;
        if (kubepods && o.pod_uid.empty())
            if (auto uid = pod_uid_of(c))
                o.pod_uid = std::move(*uid);
        if (ends_with(c, ".service") || ends_with(c, ".scope")) {
            read_unit(c, o);
            continue;
        }
        // cgroupfs drivers: /docker/<id>, /libpod_parent/libpod-<id>, /kubepods/.../<id>.
        if (o.container.empty() && is_hex_id(c) &&
            (kubepods || (i > 0 && parts[i - 1] == "docker"))) {
            o.container = std::string(c);
            if (!kubepods)
                o.runtime = "docker";
        } else if (o.container.empty() && starts_with(c, "libpod-") && is_hex_id(c.substr(7))) {
            o.runtime = "podman";
            o.container = std::string(c.substr(7));
        }
    }
    if (o == Owner{})
        return std::nullopt;
    return o;
}

std::optional<Owner> owner_of_mounts(const Strings& mounts, const Strings& other_mounts) {
    const auto from = [](std::string_view mount) -> std::optional<Owner> {
        const auto path = path_there(mount);
        if (path.empty())
            return std::nullopt;
        const auto* runtime = runtime_of_path(std::string(path));
        if (runtime == nullptr || runtime->name.empty())
            return std::nullopt;
        Owner o;
        o.runtime = std::string(runtime->name);
        o.sandbox = std::string(path.substr(path.rfind('/') + 1));
        return o;
    };
    for (const auto& list : {mounts, other_mounts})
        for (const std::string_view m : list)
            if (auto o = from(m))
                return o;
    return std::nullopt;
}

} // namespace nsidd::netns
