#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Holders as they are. One propagated mount is one holder: `ip netns exec`-style sessions
(mount namespaces whose copies of /run/netns receive from ours) add to also_in, not to the
mounts listed. An agent's private copy of a Docker sandbox mount (a mount namespace of its own,
its copy bound at /hostnetns/SANDBOX, as `-v /run/docker/netns:/hostnetns` gives) is a holder
of its own, named /proc/PID/root/hostnetns/SANDBOX. When dockerd's own mount goes (as at
`docker rm -f`), the namespace is still the sandbox's (owner kept: runtime docker and the
sandbox) and is stale-mount, held by the agent's copy, and the printed command frees it. A
holder that is gone is gone at the next look."""
import json
import os
import subprocess

import nsidtest as t

t.sandbox()
os.makedirs('/run/docker/netns')
open('/run/docker/netns/5ab0c1d2e3f4', 'w').close()
t.ip_batch(['netns add cni-p', 'netns set cni-p auto', 'netns add sb', 'netns set sb auto'])
subprocess.run(['mount', '--bind', '/run/netns/sb', '/run/docker/netns/5ab0c1d2e3f4'],
               check=True)
ids = t.NsidTable().by_name()
cni, sb = ids['cni-p'], ids['sb']
subprocess.run(['ip', 'netns', 'del', 'sb'], check=True)  # dockerd's mount alone holds it
sessions = [t.track(subprocess.Popen(['unshare', '--mount', '--propagation', 'slave', 'sleep',
                                      '600'])) for _ in range(2)]
# The agent: a mount namespace of its own whose copies are private, with the sandbox bound at
# /hostnetns/5ab0c1d2e3f4 and nothing of /run/netns or /run/docker (as in a container).
agent = t.track(subprocess.Popen(['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
                                  'mkdir -p /run/agent && mount -t tmpfs none /run/agent && '
                                  'touch /run/agent/sb && mount --bind '
                                  '/run/docker/netns/5ab0c1d2e3f4 /run/agent/sb && '
                                  'umount -l /run/netns && umount -l /run/docker/netns/* && '
                                  'exec sleep 600']))
own = os.readlink('/proc/self/ns/mnt')


def agent_ready():
    with open('/proc/%d/mountinfo' % agent.pid) as f:
        nsfs = [line.split()[4] for line in f if ' - nsfs ' in line]
    return nsfs == ['/run/agent/sb']


t.wait_for('the mount namespaces set up', lambda: all(
    os.readlink('/proc/%d/ns/mnt' % p.pid) != own for p in sessions) and agent_ready())
copy = '/proc/%d/root/run/agent/sb' % agent.pid

grace = 2
d = t.Daemon('--orphan-grace', str(grace), '--discovery-interval', '0.5')


def holders(nsid):
    e = t.entries(d).get(nsid)
    return e['peer']['holders'] if e else None


# The sessions' copies go with ours: one holder, also in 2 other mount namespaces.
t.wait_for('the sessions counted', lambda: (holders(cni) or {}).get('also_in') == 2)
h = holders(cni)
assert h['mounts'] == ['/run/netns/cni-p'], h
t.log('cni-p: one holder %s, also_in %d' % (h['mounts'], h['also_in']))
# The agent's private copy is a holder of its own, beside dockerd's mount (whose copies in
# the sessions go with it: it was bound from a shared mount, so it is shared too).
t.wait_for('the agent copy listed', lambda: copy in (holders(sb) or {}).get('mounts', []))
h = holders(sb)
assert h['mounts'] == ['/run/docker/netns/5ab0c1d2e3f4', copy] and h['also_in'] == 2, h
# dockerd's mount goes: the agent's copy alone holds the sandbox's namespace.
subprocess.run(['umount', '/run/docker/netns/5ab0c1d2e3f4'], check=True)
os.unlink('/run/docker/netns/5ab0c1d2e3f4')
try:
    e = t.wait_for('the sandbox stale, held by the agent copy', lambda: (
        lambda e: e if e and e['state'] == 'stale_mount' and
        e['peer']['holders']['mounts'] == [copy] else None)(t.entries(d).get(sb)),
        timeout=grace + 15)
except AssertionError:
    raise AssertionError(t.entries(d).get(sb))
assert e['peer']['owner'] == {'unit': None, 'runtime': 'docker', 'container': None,
                              'pod_uid': None, 'sandbox': '5ab0c1d2e3f4'}, e
leak = {x.get('nsid'): x for x in json.loads(
    t.nsidctl('-j', 'leaks', socket_path=d.socket).stdout)}[sb]
assert leak['command'] == 'nsenter -t %d -m --root umount /run/agent/sb && nsenter -t %d -m ' \
    '--root rm -f /run/agent/sb' % (agent.pid, agent.pid), leak
# The copy's holder: the agent process whose mount namespace has it.
assert e['peer']['holders']['copies'] == [
    {'path': copy, 'pid': agent.pid, 'comm': 'sleep', 'owner': None}], e
assert leak['action'].startswith('held by a copy in the mount namespace of pid %d (sleep)' %
                                 agent.pid), leak
t.log('the agent copy alone: %s, owner %s; %s' % (e['state'], e['peer']['owner'],
                                                  leak['command']))
# A session ends: the next look counts one copy less; the command frees the sandbox.
sessions[0].kill()
sessions[0].wait()
t.wait_for('one session left', lambda: holders(cni)['also_in'] == 1)
subprocess.run(['sh', '-c', leak['command']], check=True)
t.wait_for('the sandbox dead', lambda: sb not in t.entries(d))
assert sb in {x['nsid'] for x in t.deaths(d)}
d.stop()
t.log('ok')
