// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "util/owner.hpp"
#include "util/shared.hpp"
#include "util/strings.hpp"

namespace nsidd::netns {

using nsidd::Owner;

/// The owner in /proc/PID/cgroup text: the unified (v2) line "0::PATH" (unless it is the
/// root beside v1 lines: a hybrid hierarchy), else cgroup v1's "name=systemd" line, else the
/// first v1 line with a path below the root. Knows the shapes
/// docker, containerd (CRI and nerdctl), cri-o, podman and systemd-nspawn give their cgroups
/// under both systemd and cgroupfs drivers, and kubepods slices. Nothing (nullopt) when the
/// text has no usable line or the path says nothing (the root cgroup). Pure.
std::optional<Owner> parse_cgroup_owner(std::string_view text);

/// The owner a namespace's mount points say, where no process in it was seen: the runtime
/// whose path one is (util/runtimes.hpp) and the sandbox its last component names. Mounts in
/// other mount namespaces count by their path there (/proc/PID/root/PATH). Pure.
std::optional<Owner> owner_of_mounts(const Strings& mounts, const Strings& other_mounts);

} // namespace nsidd::netns
