#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Leaks older than nsidd, on a host where nothing else happens: a CNI mount (/run/netns/cni-*),
a Docker sandbox mount (/run/docker/netns/*) and a Podman one (/run/netns/netns-*), each with no
process inside, exist before nsidd starts. With nothing touching their rows, each is stale-mount
once the grace has passed since the first look, and `nsidctl leaks` lists them; the controls
stay as they are: a plain `ip netns add` name is mounted, a CNI-named namespace with a process
inside is active. The same after a restart; then each leak's command, as `nsidctl leaks`
prints it, frees its namespace."""
import json
import os
import subprocess
import time

import nsidtest as t

t.sandbox()
os.makedirs('/run/nsidd-test', exist_ok=True)
t.ip_batch(['netns add cni-x', 'netns set cni-x auto',
            'netns add netns-5f0c8a3e-1b2d-4c6f-9a7e-3d2b1c0f9e8d',
            'netns set netns-5f0c8a3e-1b2d-4c6f-9a7e-3d2b1c0f9e8d auto',
            'netns add plain', 'netns set plain auto',
            'netns add sandbox', 'netns set sandbox auto'])
# Docker's sandbox mount: the same kind of nsfs bind mount, under /run/docker/netns.
os.makedirs('/run/docker/netns', exist_ok=True)
open('/run/docker/netns/0123456789ab', 'w').close()
subprocess.run(['mount', '--bind', '/run/netns/sandbox', '/run/docker/netns/0123456789ab'],
               check=True)
live = t.in_new_netns('the live one in its namespace')
t.ip_batch(['netns attach cni-live %d' % live.pid, 'netns set cni-live auto'])
ids = t.NsidTable().by_name()
docker = ids['sandbox']
subprocess.run(['ip', 'netns', 'del', 'sandbox'], check=True)  # only the Docker path holds it
want = {ids['cni-x']: 'stale_mount', docker: 'stale_mount',
        ids['netns-5f0c8a3e-1b2d-4c6f-9a7e-3d2b1c0f9e8d']: 'stale_mount',
        ids['plain']: 'mounted', ids['cni-live']: 'active'}
grace = 3


def judged(d):
    e = t.entries(d)
    return {n: e[n]['state'] for n in want if n in e} == want


for run in ('first start', 'restart'):
    if run == 'restart':
        # An `ip netns exec` session: its mount namespace has copies of every /run/netns
        # mount (propagated from ours); the leak's command must still free the namespace.
        t.track(subprocess.Popen(['ip', 'netns', 'exec', 'cni-live', 'sleep', '600']))
    d = t.Daemon('--orphan-grace', str(grace), '--discovery-interval', '1', '--id-cache',
                 '/run/nsidd-test/ids')
    started = time.monotonic()
    # Nothing happens meanwhile: the verdicts come from the clock alone.
    try:
        t.wait_for('the leaks judged', lambda: judged(d), timeout=grace + 12, interval=0.1)
    except AssertionError:
        raise AssertionError('%s: %s' % (run, {n: t.entries(d).get(n, {}).get('state')
                                               for n in want}))
    took = time.monotonic() - started
    leaks = json.loads(t.nsidctl('-j', 'leaks', socket_path=d.socket).stdout)
    listed = {r.get('nsid') for r in (leaks if isinstance(leaks, list) else leaks['peers'])}
    assert {n for n, s in want.items() if s == 'stale_mount'} <= listed, leaks
    t.wait_for('the metric', lambda: 'nsidd_peers{state="stale-mount"} 3' in t.nsidctl(
        'metrics', socket_path=d.socket).stdout, timeout=10)
    t.log('%s: CNI, Docker and Podman mounts older than nsidd are stale-mount %.1f s after '
          'start (grace %d s), with nothing else happening; the plain name is mounted, the '
          'one with a process active' % (run, took, grace))
    if run == 'restart':
        # Each leak's printed command, run as printed, frees it: the namespace dies.
        for leak in leaks:
            if leak.get('state') != 'stale-mount':
                continue
            assert leak.get('command'), leak
            subprocess.run(['sh', '-c', leak['command']], check=True)
            t.log('nsid %d: `%s` (%s)' % (leak['nsid'], leak['command'], leak['action']))
        t.wait_for('the leaks dead', lambda: not {n for n, s in want.items()
                                                  if s == 'stale_mount'} & set(t.entries(d)))
        dead = {x['nsid'] for x in t.deaths(d)}
        assert {n for n, s in want.items() if s == 'stale_mount'} <= dead, dead
        t.log('each printed command freed its namespace (dead in the kernel and in history)')
    d.stop()
t.log('ok')
