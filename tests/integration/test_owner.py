#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Owners from real cgroups. Processes are put in cgroups shaped like docker's (systemd
driver), containerd's CRI under kubepods slices, cri-o's, and a kubepods pod of the cgroupfs
driver, made by this test in the cgroup v2 hierarchy and, where the host has it, the v1
name=systemd one (hybrid hosts). Each process then enters a network namespace of its own;
nsidd names the unit, the runtime, the container and the pod of each. The cgroups are removed
at the end, pass or fail."""
import os
import subprocess

import nsidtest as t

t.sandbox()
ID = '4f1c2ab7e3d94c0b8a6e2f7d1c3b5a9e8f7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b'
UID = '9c1d3f2e-6b7a-4c8d-9e0f-1a2b3c4d5e6f'
# Under a parent of the test's own, so that nothing of the host's is touched.
TOP = 'nsidd-test-%d' % os.getpid()
CASES = [
    ('%s/system.slice/docker-%s.scope' % (TOP, ID),
     {'unit': 'docker-%s.scope' % ID, 'runtime': 'docker', 'container': ID, 'pod_uid': None,
      'sandbox': None}),
    ('%s/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice/'
     'cri-containerd-%s.scope' % (TOP, UID.replace('-', '_'), ID),
     {'unit': 'cri-containerd-%s.scope' % ID, 'runtime': 'containerd', 'container': ID,
      'pod_uid': UID, 'sandbox': None}),
    ('%s/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice/'
     'crio-%s.scope' % (TOP, UID.replace('-', '_'), ID),
     {'unit': 'crio-%s.scope' % ID, 'runtime': 'cri-o', 'container': ID, 'pod_uid': UID,
      'sandbox': None}),
    ('%s/kubepods/burstable/pod%s/%s' % (TOP, UID, ID),
     {'unit': None, 'runtime': None, 'container': ID, 'pod_uid': UID, 'sandbox': None}),
]

roots = t.cgroups([path for path, _ in CASES])

d = t.Daemon('--discovery-interval', '0.2', '--assign-ids')
kernel = t.NsidTable()
for path, want in CASES:
    moves = '; '.join('echo $$ > %s/%s/cgroup.procs' % (root, path) for root in roots)
    p = subprocess.Popen(['sh', '-c', moves + '; exec unshare --net sleep 600'])
    t.track(p)
    ns = '/proc/%d/ns/net' % p.pid
    own = os.readlink('/proc/self/ns/net')
    t.wait_for('its own namespace', lambda: os.readlink(ns) != own)
    with open('/proc/%d/cgroup' % p.pid) as f:
        lines = f.read()
    assert '/' + path + '\n' in lines, lines
    nsid = t.wait_for_value('an id', lambda: kernel.by_path([ns])[ns])

    def owned():
        e = t.entries(d).get(nsid)
        return e if e and e['peer']['owner'] == want else None
    try:
        e = t.wait_for('the owner of ' + path, owned, timeout=20)
    except AssertionError:
        raise AssertionError('%s: %s' % (path, t.entries(d).get(nsid)))
    assert e['state'] == 'active' and e['peer']['pid'] == p.pid, e
    t.log('%s: %s' % (path.split('/', 1)[1], e['peer']['owner']))
# A namespace no process was ever in, kept by an fd of a process in the docker-shaped cgroup
# after its name went: owned as its holder is.
subprocess.run(['ip', 'netns', 'add', 'kept'], check=True)
subprocess.run(['ip', 'netns', 'set', 'kept', 'auto'], check=True)
kept = kernel.by_name()['kept']
moves = '; '.join('echo $$ > %s/%s/cgroup.procs' % (root, CASES[0][0]) for root in roots)
holder = subprocess.Popen(['sh', '-c', moves + '; exec 3</run/netns/kept; exec sleep 600'])
t.track(holder)
# (The shell opens and closes fds while it moves itself: fd_targets skips those gone.)
t.wait_for('the fd open', lambda: '/run/netns/kept' in t.fd_targets(holder.pid))
subprocess.run(['ip', 'netns', 'del', 'kept'], check=True)
try:
    e = t.wait_for('kept fd-held, owned', lambda: (lambda e: e if e and e['state'] == 'fd_held'
                   and e['peer']['owner'] == CASES[0][1] else None)(t.entries(d).get(kept)),
                   timeout=20)
except AssertionError:
    raise AssertionError('kept: %s' % t.entries(d).get(kept))
assert e['peer']['holders']['fds'][0]['pid'] == holder.pid, e
t.log('kept by an fd of a docker-shaped process: owner %s' % e['peer']['owner']['runtime'])
holder.kill()
holder.wait()
# nsidctl list --owner finds them by container or pod.
listed = t.nsidctl('-j', 'list', '--owner', UID, socket_path=d.socket).stdout
assert listed.count(UID) >= 3, listed
d.stop()
t.log('ok')
