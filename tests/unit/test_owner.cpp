// SPDX-License-Identifier: LGPL-2.1-or-later
// parse_cgroup_owner on /proc/PID/cgroup text of the shapes each runtime gives its cgroups,
// owners from runtimes' mount paths, and the runtime table itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "netns/owner.hpp"
#include "util/runtimes.hpp"

namespace nsidd::netns {
namespace {

const std::string kId = "4f1c2ab7e3d94c0b8a6e2f7d1c3b5a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b";

Owner owner(const std::string& text) {
    auto o = parse_cgroup_owner(text);
    EXPECT_TRUE(o.has_value()) << text;
    return o.value_or(Owner{});
}

TEST(Owner, DockerSystemdDriver) {
    const auto o = owner("0::/system.slice/docker-" + kId + ".scope\n");
    EXPECT_EQ(o, (Owner{"docker-" + kId + ".scope", "docker", kId, "", ""}));
}

TEST(Owner, DockerCgroupfsDriverV1) {
    const auto o = owner("12:pids:/docker/" + kId + "\n11:memory:/docker/" + kId +
                         "\n1:name=systemd:/docker/" + kId + "\n0::/\n");
    EXPECT_EQ(o.runtime, "docker");
    EXPECT_EQ(o.container, kId);
    EXPECT_EQ(o.unit, "");
}

TEST(Owner, ContainerdCriInKubepodsSlices) {
    const auto o = owner("0::/kubepods.slice/kubepods-burstable.slice/"
                         "kubepods-burstable-pod9c1d3f2e_6b7a_4c8d_9e0f_1a2b3c4d5e6f.slice/"
                         "cri-containerd-" +
                         kId + ".scope\n");
    EXPECT_EQ(o, (Owner{"cri-containerd-" + kId + ".scope", "containerd", kId,
                        "9c1d3f2e-6b7a-4c8d-9e0f-1a2b3c4d5e6f", ""}));
}

TEST(Owner, GuaranteedPodWithoutQosSlice) {
    const auto o =
        owner("0::/kubepods.slice/kubepods-pod9c1d3f2e_6b7a_4c8d_9e0f_1a2b3c4d5e6f.slice/"
              "cri-containerd-" +
              kId + ".scope\n");
    EXPECT_EQ(o.pod_uid, "9c1d3f2e-6b7a-4c8d-9e0f-1a2b3c4d5e6f");
    EXPECT_EQ(o.container, kId);
}

TEST(Owner, CriOAndItsConmon) {
    const auto o = owner("0::/kubepods.slice/kubepods-besteffort.slice/"
                         "kubepods-besteffort-pod0a1b2c3d_4e5f_6a7b_8c9d_0e1f2a3b4c5d.slice/crio-" +
                         kId + ".scope\n");
    EXPECT_EQ(o.runtime, "cri-o");
    EXPECT_EQ(o.container, kId);
    EXPECT_EQ(o.pod_uid, "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d");
    const auto conmon = owner("0::/kubepods.slice/kubepods-besteffort.slice/"
                              "kubepods-besteffort-pod0a1b2c3d_4e5f_6a7b_8c9d_0e1f2a3b4c5d.slice/"
                              "crio-conmon-" +
                              kId + ".scope\n");
    EXPECT_EQ(conmon.runtime, "cri-o");
    EXPECT_EQ(conmon.container, kId);
}

TEST(Owner, KubepodsCgroupfsDriver) {
    const auto o =
        owner("0::/kubepods/burstable/pod9c1d3f2e-6b7a-4c8d-9e0f-1a2b3c4d5e6f/" + kId + "\n");
    EXPECT_EQ(o.pod_uid, "9c1d3f2e-6b7a-4c8d-9e0f-1a2b3c4d5e6f");
    EXPECT_EQ(o.container, kId);
    EXPECT_EQ(o.runtime, ""); // the path does not say which runtime
}

TEST(Owner, PodmanRootfulRootlessAndCgroupfs) {
    auto o = owner("0::/machine.slice/libpod-" + kId + ".scope/container\n");
    EXPECT_EQ(o, (Owner{"libpod-" + kId + ".scope", "podman", kId, "", ""}));
    o = owner("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + kId +
              ".scope\n");
    EXPECT_EQ(o.runtime, "podman");
    EXPECT_EQ(o.unit, "libpod-" + kId + ".scope");
    o = owner("0::/libpod_parent/libpod-" + kId + "\n");
    EXPECT_EQ(o.runtime, "podman");
    EXPECT_EQ(o.container, kId);
}

TEST(Owner, SystemdNspawnMachines) {
    auto o = owner("0::/machine.slice/systemd-nspawn@web-1.service/payload/system.slice/"
                   "nginx.service\n");
    EXPECT_EQ(o.runtime, "systemd-nspawn");
    EXPECT_EQ(o.container, "web-1");
    EXPECT_EQ(o.unit, "nginx.service"); // the innermost unit: inside the machine
    o = owner("0::/machine.slice/machine-web\\x2d1.scope/payload\n");
    EXPECT_EQ(o.runtime, "systemd-nspawn");
    EXPECT_EQ(o.container, "web-1");
}

TEST(Owner, PlainUnitsAndNerdctl) {
    EXPECT_EQ(owner("0::/system.slice/nginx.service\n"), (Owner{"nginx.service", "", "", "", ""}));
    EXPECT_EQ(owner("0::/user.slice/user-1000.slice/session-3.scope\n").unit, "session-3.scope");
    const auto o = owner("0::/system.slice/nerdctl-" + kId + ".scope\n");
    EXPECT_EQ(o.runtime, "containerd");
    EXPECT_EQ(o.container, kId);
    EXPECT_EQ(owner("1:name=systemd:/system.slice/cron.service\n2:cpu:/\n").unit, "cron.service");
}

TEST(Owner, AnIdUnderAnUnknownParentIsNoContainer) {
    // A hex directory is a container only where a runtime's shape says so: a job scheduler's
    // /process_api/<hash> is not one.
    EXPECT_FALSE(parse_cgroup_owner("4:memory:/process_api/768b678fed47fe0dcd8d7aecbdc0d287\n"
                                    "9:name=systemd:/\n0::/\n")
                     .has_value());
}

TEST(Owner, NothingToSayOrNothingUsable) {
    for (const char* text : {"", "0::/\n", "garbage", "0::relative/path\n", ":::\n", "\n\n",
                             "12:memory\n", "0::/user.slice\n"})
        EXPECT_FALSE(parse_cgroup_owner(text).has_value()) << text;
    // A deleted cgroup (a process exiting) still says whose it was.
    EXPECT_EQ(owner("0::/system.slice/foo.service (deleted)\n").unit, "foo.service");
    // Lines of any length or content never crash it.
    std::string junk(100000, ':');
    EXPECT_FALSE(parse_cgroup_owner(junk).has_value());
    // "b.service" is no line of its own (no "ID:CONTROLLERS:"), and "a" is no unit.
    EXPECT_FALSE(parse_cgroup_owner("0::/system.slice/a\nb.service\n").has_value());
}

Owner from_mounts(std::vector<std::string> mounts, std::vector<std::string> other = {}) {
    return owner_of_mounts(Strings(mounts), Strings(other)).value_or(Owner{});
}

TEST(Owner, RuntimePathsNameRuntimeAndSandbox) {
    // Each runtime's rootful and rootless mount points, as the runtimes make them.
    EXPECT_EQ(from_mounts({"/run/docker/netns/1f2e3d4c5b6a"}),
              (Owner{"", "docker", "", "", "1f2e3d4c5b6a"}));
    EXPECT_EQ(from_mounts({"/run/user/1000/docker/netns/abc"}).runtime, "docker");
    EXPECT_EQ(from_mounts({"/var/run/netns/netns-5a1b2c3d-1111-2222-3333-444455556666"}),
              (Owner{"", "podman", "", "", "netns-5a1b2c3d-1111-2222-3333-444455556666"}));
    EXPECT_EQ(from_mounts({"/run/user/1000/netns/netns-x"}).runtime, "podman");
    EXPECT_EQ(from_mounts({"/run/netns/cni-0b1c"}), (Owner{"", "cri", "", "", "cni-0b1c"}));
    // Seen in another mount namespace only: its path there counts.
    EXPECT_EQ(from_mounts({}, {"/proc/77/root/run/docker/netns/beef"}).sandbox, "beef");
    // The first runtime path wins over a plain name beside it.
    EXPECT_EQ(from_mounts({"/run/netns/blue", "/run/netns/cni-1"}).runtime, "cri");
    // Plain ip netns names, other places, and lookalikes say nothing.
    for (const char* path : {"/run/netns/blue", "/tmp/netns-x", "/run/docker/netns/a/b",
                             "/run/netnsx/cni-1", "/proc/12/root"})
        EXPECT_FALSE(owner_of_mounts(Strings(std::vector<std::string>{path}), {})) << path;
}

TEST(Runtimes, OneTableForScopesPathsAndLeaks) {
    std::string id;
    ASSERT_NE(runtime_of_scope("libpod-conmon-abc.scope", id), nullptr);
    EXPECT_EQ(runtime_of_scope("libpod-conmon-abc.scope", id)->name, "podman");
    EXPECT_EQ(id, "abc");
    EXPECT_EQ(runtime_of_scope("docker-.scope", id), nullptr); // no id
    EXPECT_EQ(runtime_of_scope("docker-abc.service", id), nullptr);
    const auto globs = leak_prone_paths({"/srv/ns/*"});
    for (const char* g : {"/run/netns/cni-*", "/run/docker/netns/*", "/run/netns/netns-*",
                          "/run/user/*/docker/netns/*", "/run/user/*/netns/netns-*", "/srv/ns/*"})
        EXPECT_NE(std::find(globs.begin(), globs.end(), g), globs.end()) << g;
    // Plain names are kept on purpose: never leak-prone.
    EXPECT_EQ(std::find(globs.begin(), globs.end(), "/run/netns/*"), globs.end());
    EXPECT_FALSE(runtime_of_path("/run/netns/blue")->leak_prone);
    EXPECT_TRUE(runtime_of_path("/run/netns/netns-1")->leak_prone);
}

} // namespace
} // namespace nsidd::netns
