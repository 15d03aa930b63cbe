// SPDX-License-Identifier: LGPL-2.1-or-later
#pragma once

#include <string>

#include "util/shared.hpp"

namespace nsidd {

/// Whose a namespace is, read from the cgroup of a process inside it (or of one holding it).
/// Parts the path does not say are empty.
struct Owner {
    std::string unit;      ///< the innermost systemd unit (.service or .scope)
    std::string runtime;   ///< docker, containerd, cri-o, podman, systemd-nspawn
    std::string container; ///< the runtime's container id (or the machine's name)
    std::string pod_uid;   ///< the Kubernetes pod, from a kubepods cgroup
    /// The runtime's sandbox, named by its mount point (util/runtimes.hpp): what is known of
    /// a namespace no process was seen in.
    std::string sandbox;
    bool operator==(const Owner&) const = default;
};

/// A copy of a namespace's mount in another mount namespace that is a holder of its own (a
/// private copy: an agent container's volume), named by a process whose mount namespace has
/// it, and that process's owner.
struct CopyHolder {
    std::string path; ///< /proc/PID/root/PATH
    int pid = 0;
    std::string comm;
    Shared<Owner> owner;
    bool operator==(const CopyHolder&) const = default;
};

} // namespace nsidd
