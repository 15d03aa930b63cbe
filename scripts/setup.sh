#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs what nsidd needs on Debian 12 (as root; only what is missing), builds it, and then
#   run:  runs nsidd in the foreground (extra arguments go to nsidd)
#   test: runs the whole test suite
# Safe to re-run.
set -eu
mode=${1:-}
[ $# -gt 0 ] && shift
case "$mode" in
run | test | build) ;;
*)
    echo "usage: $0 run [NSIDD-ARGS...] | test | build" >&2
    exit 2
    ;;
esac
cd "$(dirname "$0")/.."

build_pkgs="meson ninja-build g++ pkg-config libmnl-dev libsystemd-dev libspdlog-dev
    libcli11-dev nlohmann-json3-dev libexpected-dev libgtest-dev libgmock-dev
    libbenchmark-dev prometheus-cpp-dev libhttp-parser-dev iproute2 python3 scdoc"
test_pkgs="clang-format util-linux git systemd man-db prometheus prometheus-alertmanager valgrind
    build-essential debhelper dpkg-dev lintian debootstrap systemd-container strace
    python3-fuse docker.io podman runc conmon netavark aardvark-dns containernetworking-plugins
    iptables busybox-static python3-yaml catatonit"
pkgs=$build_pkgs
[ "$mode" = test ] && pkgs="$pkgs $test_pkgs"

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages:$missing (run as root to install them)" >&2
        exit 1
    fi
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The tests run dockerd and podman in sandboxes of their own: no service is started on
    # this machine while the packages install (a policy-rc.d of our own, only if none is set).
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    [ -n "$policy" ] && rm -f "$policy"
fi

# The test build treats warnings as errors (the default build, a packager's, does not).
werror=false
[ "$mode" = test ] && werror=true
if [ -f build/build.ninja ]; then
    meson configure build -Dwerror=$werror >/dev/null
else
    meson setup build -Dwerror=$werror
fi
meson compile -C build

case "$mode" in
run) exec ./build/daemon/nsidd "$@" ;;
test) exec meson test -C build --print-errorlogs ;;
esac
