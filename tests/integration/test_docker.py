#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Docker (Debian 12's docker.io: dockerd 20.10, containerd, runc) in the sandbox, against a
real nsidd (runtimes.leak_scenario): running containers are active and owned by their
container, `docker rm -f` records a death with the container id, and the classic leak
(dockerd, containerd and the shim killed, then the container's process) leaves
/run/docker/netns/SANDBOX mounted: stale-mount within grace + one interval, kept across an
nsidd restart, freed by the printed command."""
import nsidtest as t

t.sandbox(pid=True)
import runtimes as rt  # noqa: E402 (inside the sandbox only)

docker = rt.Docker()
rt.leak_scenario(docker,
                 start=lambda name, *extra: docker('run', '-d', '--name', name, *extra, rt.IMAGE,
                                                 'sleep', '600'),
                 remove=lambda name: docker('rm', '-f', name),
                 crash=lambda: rt.kill_named('dockerd', 'containerd', 'containerd-shim'))
t.log('ok')
