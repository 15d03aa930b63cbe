#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Fails on an include that points up the layers of docs/design.md:
#   util <- netlink;  util <- netns;  util <- registry;  registry + netns <- mirror;
#   util <- varlink;  daemon uses all;
#   cli uses varlink + util only (never libmnl).
set -u
root=${1:-.}
cd "$root" || exit 1
bad=0
check() { # dir, pattern of forbidden includes, why
    hits=$(grep -rnE "^#include [<\"]($2)" "$1" --include='*.hpp' --include='*.cpp' 2>/dev/null)
    if [ -n "$hits" ]; then
        echo "layer violation in $1 ($3):"
        echo "$hits"
        bad=1
    fi
}
check lib/util 'netlink/|registry/|netns/|varlink/|daemon/|linux/|libmnl|systemd/|spdlog|nlohmann' 'std and libc only'
check lib/netlink 'registry/|netns/|varlink/|daemon/|systemd/|spdlog|nlohmann' 'util, linux and libmnl only'
check lib/registry 'netlink/|netns/|varlink/|daemon/|linux/|libmnl|systemd/|spdlog|nlohmann|sys/socket|unistd|chrono|ctime' 'util only: no I/O, clock or netlink'
check lib/netns 'netlink/|registry/|mirror/|varlink/|daemon/|libmnl|systemd/|spdlog|nlohmann' 'util only: asks the kernel through netns::Queries'
check lib/mirror 'netlink/|varlink/|daemon/|libmnl|systemd/|spdlog|nlohmann' 'registry, netns and util only: the kernel is mirror::Kernel'
check lib/varlink 'netlink/|registry/|netns/|daemon/|linux/|libmnl|systemd/|spdlog' 'util and nlohmann-json only'
check cli 'netlink/|registry/|netns/|daemon/|linux/|libmnl|systemd/|spdlog' 'varlink and util only'
# Logging above debug belongs to daemon/ alone.
hits=$(grep -rnE 'spdlog::(info|warn|error|critical)' lib cli 2>/dev/null)
if [ -n "$hits" ]; then
    echo "logging above debug outside daemon/:"
    echo "$hits"
    bad=1
fi
# The codec is pure: no syscalls.
hits=$(grep -nE '\b(recv|send|recvmsg|sendmsg|socket|open|read|write|ioctl)\(' lib/netlink/codec.cpp)
if [ -n "$hits" ]; then
    echo "syscall in the pure codec:"
    echo "$hits"
    bad=1
fi
[ $bad -eq 0 ] && echo "layers ok"
exit $bad
