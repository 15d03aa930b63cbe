// SPDX-License-Identifier: LGPL-2.1-or-later
#include "util/runtimes.hpp"

#include <fnmatch.h>

namespace nsidd {
namespace {

// What the runtimes do, measured with each (docs/design.md, "Runtimes"): containerd and cri-o
// under Kubernetes mount /run/netns/cni-UUID through the CNI plugins and remove it when the
// pod sandbox goes (`crictl rmp`); a pod whose runtime died keeps it. dockerd mounts
// /run/docker/netns/SANDBOX (/var/run is a link to /run) and removes it when the container
// stops, or at its next start for sandboxes left behind; rootless dockerd does the same under
// its own runtime directory. Podman (netavark and CNI) mounts /run/netns/netns-UUID, rootless
// under /run/user/UID/netns/, and removes it with the container (`podman rm -f`); a container
// whose conmon died keeps it. `ip netns add NAME` mounts /run/netns/NAME: kept on purpose.
constexpr Runtime kRuntimes[] = {
    {"cri",
     {},
     {"/run/netns/cni-*", "/var/run/netns/cni-*"},
     true,
     "its pod is gone: crictl rmp {container} if crictl pods lists it, or run the CNI "
     "plugin's GC"},
    {"docker",
     {"docker-"},
     {"/run/docker/netns/*", "/var/run/docker/netns/*", "/run/user/*/docker/netns/*"},
     true,
     "its container is gone or dockerd is down: docker rm -f {container} if docker ps -a "
     "lists it, or restart dockerd (it removes stale sandboxes)"},
    {"podman",
     {"libpod-conmon-", "libpod-"},
     {"/run/netns/netns-*", "/var/run/netns/netns-*", "/run/user/*/netns/netns-*"},
     true,
     "its container is gone or its conmon died: podman rm -f {container} if podman ps -a "
     "lists it"},
    {"containerd", {"cri-containerd-", "nerdctl-", "containerd-"}, {}, false, ""},
    {"cri-o", {"crio-conmon-", "crio-"}, {}, false, ""},
    {"systemd-nspawn", {"machine-"}, {}, false, ""},
    {"",
     {},
     {"/run/netns/*", "/var/run/netns/*"},
     false,
     "nothing but this mount holds it; if it is not wanted"},
};

} // namespace

bool glob_matches(std::string_view glob, std::string_view path) {
    const auto literal = glob.find_first_of("*?[\\");
    if (path.compare(0, literal, glob.substr(0, literal)) != 0)
        return false; // most paths part here, without a call
    return ::fnmatch(std::string(glob).c_str(), std::string(path).c_str(), FNM_PATHNAME) == 0;
}

std::string_view path_there(std::string_view mount) {
    if (!mount.starts_with("/proc/"))
        return mount;
    const auto root = mount.find("/root/");
    return root == std::string_view::npos ? std::string_view() : mount.substr(root + 5);
}

std::span<const Runtime> runtimes() noexcept {
    return kRuntimes;
}

const Runtime* runtime_of_scope(std::string_view scope, std::string& container) {
    if (!scope.ends_with(".scope"))
        return nullptr;
    scope.remove_suffix(6);
    for (const auto& r : kRuntimes)
        for (const auto prefix : r.scopes)
            if (!prefix.empty() && scope.starts_with(prefix) && scope.size() > prefix.size()) {
                container = std::string(scope.substr(prefix.size()));
                return &r;
            }
    return nullptr;
}

const Runtime* runtime_of_path(const std::string& path) {
    for (const auto& r : kRuntimes)
        for (const auto glob : r.paths)
            if (!glob.empty() && glob_matches(glob, path))
                return &r;
    return nullptr;
}

std::vector<std::string> leak_prone_paths(const std::vector<std::string>& extra) {
    std::vector<std::string> out;
    for (const auto& r : kRuntimes)
        for (const auto glob : r.paths)
            if (r.leak_prone && !glob.empty())
                out.emplace_back(glob);
    out.insert(out.end(), extra.begin(), extra.end());
    return out;
}

} // namespace nsidd
