#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Podman (Debian 12's podman 4.3 with runc, conmon and netavark) in the sandbox, against a
real nsidd (runtimes.leak_scenario): running containers are active and owned by their
container, `podman rm -f` records a death with the container id, and the classic leak (conmon
killed, then the container's process) leaves /run/netns/netns-UUID mounted: stale-mount within
grace + one interval, kept across an nsidd restart, freed by the printed command."""
import nsidtest as t

t.sandbox(pid=True)
import runtimes as rt  # noqa: E402 (inside the sandbox only)

podman = rt.Podman()
rt.leak_scenario(podman,
                 start=lambda name, *extra: podman.run('--name', name, *extra, rt.IMAGE, 'sleep',
                                                    '600'),
                 remove=lambda name: podman('rm', '-f', '-t', '0', name),
                 crash=lambda: rt.kill_named('conmon'))
t.log('ok')
