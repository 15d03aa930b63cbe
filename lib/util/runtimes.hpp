// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <array>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nsidd {

/// A container runtime (or tool) that bind-mounts network namespaces, as data: how its cgroups
/// and its mount points name it, and what frees a namespace it left behind (docs/design.md,
/// "Runtimes"). One table serves the daemon (leak-prone paths, owners) and nsidctl (advice).
struct Runtime {
    /// As owner.runtime says it; empty for a tool that is no runtime (plain `ip netns`).
    std::string_view name;
    /// Cgroup scopes PREFIX<container id>.scope that it names its containers' cgroups with.
    std::array<std::string_view, 3> scopes;
    /// Globs (fnmatch, FNM_PATHNAME) of its mount points; the last path component is the
    /// sandbox's name.
    std::array<std::string_view, 4> paths;
    /// A mount on `paths` that no process is inside is a leak (the runtime removes its own
    /// when it removes the container): stale-mount after the grace period.
    bool leak_prone;
    /// What happened and what the runtime offers, for an operator; "{container}" stands for
    /// the container (or pod) id where one is known.
    std::string_view advice;
};

/// Whether `path` matches `glob` (fnmatch, FNM_PATHNAME; the glob's literal prefix is compared
/// first: most paths part there, without a call).
bool glob_matches(std::string_view glob, std::string_view path);

/// A mount point as its own mount namespace names it: PATH for /proc/PID/root/PATH (a mount of
/// another mount namespace), else `mount` itself; empty for a /proc path of no such shape.
std::string_view path_there(std::string_view mount);

/// Every runtime nsidd knows, most specific paths first.
std::span<const Runtime> runtimes() noexcept;

/// The runtime whose cgroup scope `scope` (a cgroup path component ending in ".scope") is, and
/// the container id it names (set in `container`); nullptr when none is.
const Runtime* runtime_of_scope(std::string_view scope, std::string& container);

/// The runtime whose mount point `path` is (the first whose glob matches), or nullptr.
const Runtime* runtime_of_path(const std::string& path);

/// The globs where a mount without a process is a leak: every leak-prone runtime's, then
/// `extra` (the operator's --stale-mount-paths).
std::vector<std::string> leak_prone_paths(const std::vector<std::string>& extra = {});

} // namespace nsidd
