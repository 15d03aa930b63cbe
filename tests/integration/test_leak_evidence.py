#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Verdicts from evidence, across a restart. A Docker-shaped container (its process in a
docker-ID.scope cgroup, its namespace mounted at /run/docker/netns/SANDBOX) whose process is
killed is stale-mount, owned by the container; a namespace kept only by another process's fd is
fd-held; a Docker sandbox mount no process was ever seen in is owned by what its path says
(runtime docker, the sandbox); so is one whose namespace has no id at all (ListWithoutNsid,
`nsidctl leaks` by cookie, nsidd_leaking_namespaces), which is given none; a namespace with no
id that only an fd holds is fd-held there too. Each leak has a leaking-since: when the first look showed it so.
nsidd restarts: the leaks are judged again at its first look, with the same leaking-since (not
restarted) and the container's owner kept, not lost; `nsidctl leaks` shows them with the
runtime's advice. A plain `ip netns add` name stays mounted, with no leaking-since."""
import json
import os
import subprocess

import nsidtest as t

t.sandbox()
os.makedirs('/run/nsidd-test', exist_ok=True)
ID = '7d3c1b2a9f8e4d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817060f1e'
SCOPE = 'nsidd-test-%d/system.slice/docker-%s.scope' % (os.getpid(), ID)
roots = t.cgroups([SCOPE])

# The container: its process in the docker scope, in a namespace of its own that Docker's
# path mounts (and, to give it an id, a /run/netns name removed at once).
moves = '; '.join('echo $$ > %s/%s/cgroup.procs' % (root, SCOPE) for root in roots)
container = subprocess.Popen(['sh', '-c', moves + '; exec unshare --net sleep 600'])
t.track(container)
own = os.readlink('/proc/self/ns/net')
t.wait_for('the container in its namespace',
           lambda: os.readlink('/proc/%d/ns/net' % container.pid) != own, interval=0.01)
os.makedirs('/run/docker/netns', exist_ok=True)
for sandbox in ('c0ffee012345', 'beef00112233'):
    open('/run/docker/netns/' + sandbox, 'w').close()
t.ip_batch(['netns attach ctr %d' % container.pid, 'netns set ctr auto',
            'netns add orphan', 'netns set orphan auto', 'netns add held', 'netns set held auto',
            'netns add plain', 'netns set plain auto'])
subprocess.run(['mount', '--bind', '/run/netns/ctr', '/run/docker/netns/c0ffee012345'], check=True)
subprocess.run(['mount', '--bind', '/run/netns/orphan', '/run/docker/netns/beef00112233'],
               check=True)
ids = t.NsidTable().by_name()
ctr, orphan, held, plain = ids['ctr'], ids['orphan'], ids['held'], ids['plain']
# A sandbox no id was ever given for (as a --network none container's): in no table.
noid_cookie = t.mount_only('/run/docker/netns/0dd0dd0dd0dd')[0]
# A namespace with no id that only an fd holds (its name gone: the fd's link reads "/").
t.ip_batch(['netns add fdonly'])
fdonly_cookie = t.identity('/run/netns/fdonly')[0]
fdonly_holder = t.track(subprocess.Popen(['sh', '-c', 'exec 3</run/netns/fdonly; exec sleep 600']))
t.wait_for('its fd open', lambda: '/run/netns/fdonly' in t.fd_targets(fdonly_holder.pid))
subprocess.run(['ip', 'netns', 'del', 'fdonly'], check=True)
assert t.NsidTable().by_path(['/run/docker/netns/0dd0dd0dd0dd'])[
    '/run/docker/netns/0dd0dd0dd0dd'] is None
holder = subprocess.Popen(['sh', '-c', 'exec 3</run/netns/held; exec sleep 600'])
t.track(holder)
t.wait_for('the fd open', lambda: '/run/netns/held' in t.fd_targets(holder.pid))
subprocess.run(['ip', 'netns', 'del', 'ctr'], check=True)
subprocess.run(['ip', 'netns', 'del', 'orphan'], check=True)
subprocess.run(['ip', 'netns', 'del', 'held'], check=True)

grace = 3
args = ('--orphan-grace', str(grace), '--discovery-interval', '1', '--id-cache',
        '/run/nsidd-test/ids')
d = t.Daemon(*args)
t.wait_for('the container active and owned', lambda: (lambda e: e and e['state'] == 'active'
           and (e['peer']['owner'] or {}).get('container') == ID)(t.entries(d).get(ctr)))
container.kill()
container.wait()
want = {ctr: 'stale_mount', orphan: 'stale_mount', held: 'fd_held', plain: 'mounted'}


def without_id(daemon):
    """The id-less sandbox as ListWithoutNsid shows it, once stale."""
    got = [n for n in daemon.call('io.nsidd.Registry.ListWithoutNsid')['parameters'][
        'namespaces'] if n['peer']['cookie'] == noid_cookie]
    return got[0] if got and got[0]['state'] == 'stale_mount' else None


def fd_only(daemon):
    """The id-less namespace only an fd holds, once fd-held."""
    got = [n for n in daemon.call('io.nsidd.Registry.ListWithoutNsid')['parameters'][
        'namespaces'] if n['peer']['cookie'] == fdonly_cookie]
    return got[0] if got and got[0]['state'] == 'fd_held' else None


def judged(daemon):
    e = t.entries(daemon)
    return {n: e.get(n, {}).get('state') for n in want} == want and without_id(daemon) and \
        fd_only(daemon)


try:
    t.wait_for('the leaks judged', lambda: judged(d), timeout=grace + 20)
except AssertionError:
    raise AssertionError({n: t.entries(d).get(n) for n in want})
first = t.entries(d)
for n, state in want.items():
    since = first[n]['leaking_since']
    assert (since is None) == (state == 'mounted'), first[n]
owner = first[ctr]['peer']['owner']
assert owner['runtime'] == 'docker' and owner['container'] == ID, owner
# No process was ever seen in the orphan: its path says whose it is.
assert first[orphan]['peer']['owner'] == {
    'unit': None, 'runtime': 'docker', 'container': None, 'pod_uid': None,
    'sandbox': 'beef00112233'}, first[orphan]
t.log('first start: %s' % {n: (first[n]['state'], first[n]['leaking_since']) for n in want})
first_noid = without_id(d)
assert first_noid['leaking_since'] and first_noid['peer']['owner']['sandbox'] == '0dd0dd0dd0dd', \
    first_noid
assert noid_cookie not in {e['peer']['cookie'] for e in t.entries(d).values()}  # no id given
# Counted with the rows: ctr, orphan and the id-less one; held and the fd-only one (at least:
# what leaks elsewhere on this machine counts too).
t.wait_for('the leaks counted', lambda: t.metric(
    d, 'nsidd_leaking_namespaces{state="stale-mount"}') >= 3 and t.metric(
    d, 'nsidd_leaking_namespaces{state="fd-held"}') >= 2)
held_only = fd_only(d)
assert held_only['peer']['holders']['fds'][0]['pid'] == fdonly_holder.pid and \
    held_only['leaking_since'], held_only
t.log('without an id: %s since %s, counted in nsidd_leaking_namespaces' % (
    first_noid['state'], first_noid['leaking_since']))
d.stop()

# The restart: the same verdicts at the first look, the same leaking-since, the owner kept.
d = t.Daemon(*args)
try:
    t.wait_for('the leaks judged again', lambda: judged(d), timeout=grace + 20)
except AssertionError:
    raise AssertionError({n: t.entries(d).get(n) for n in want})
again = t.entries(d)
for n in want:
    assert again[n]['leaking_since'] == first[n]['leaking_since'], (first[n], again[n])
assert again[ctr]['peer']['owner'] == owner, again[ctr]
assert without_id(d)['leaking_since'] == first_noid['leaking_since'], without_id(d)
t.log('restart: each leak judged again with its leaking-since kept; the container owner kept')
# nsidctl leaks: leaking-since, owner, and the runtime's own words naming the container.
leaks = {x.get('nsid'): x for x in json.loads(
    t.nsidctl('-j', 'leaks', socket_path=d.socket).stdout)}
listed = json.loads(t.nsidctl('-j', 'leaks', socket_path=d.socket).stdout)
noid_leak = [x for x in listed if x.get('nsid') is None and x['peer']['cookie'] == noid_cookie]
assert any(x.get('nsid') is None and x['peer']['cookie'] == fdonly_cookie and
           x['state'] == 'fd-held' for x in listed), listed
assert len(noid_leak) == 1 and noid_leak[0]['leaking-since'] == first_noid['leaking_since'], \
    listed
assert {ctr, orphan, held} <= set(leaks), leaks
assert leaks[ctr]['leaking-since'] == first[ctr]['leaking_since'], leaks[ctr]
assert 'docker rm -f ' + ID in leaks[ctr]['action'], leaks[ctr]
assert 'docker rm -f CONTAINER' in leaks[orphan]['action'], leaks[orphan]
table = t.nsidctl('leaks', socket_path=d.socket).stdout
assert 'docker:7d3c1b2a' in table and 'docker:beef0011' in table, table
t.log(table)
for command in [leaks[n]['command'] for n in (ctr, orphan)] + [noid_leak[0]['command']]:
    subprocess.run(['sh', '-c', command], check=True)
holder.kill()
holder.wait()
t.wait_for('the leaks dead', lambda: not {ctr, orphan, held} & set(t.entries(d)))
# The fd-only one: gone at the next pass once its holder is (its fd link read again).
fdonly_holder.kill()
fdonly_holder.wait()
t.wait_for('the fd-only one gone', lambda: fd_only(d) is None, timeout=10)
t.wait_for('the id-less one gone', lambda: noid_cookie not in {
    n['peer']['cookie'] for n in d.call('io.nsidd.Registry.ListWithoutNsid')['parameters'][
        'namespaces']})
d.stop()
t.log('ok')
