#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Host scope: every namespace's table that self has an id for, kept equal to the kernel
(TARGET_NSID dumps), with cross-table purge in one sweep when peers die.
1. A, B, C with ids in self; A->B 3, A->C 4, B->C 9, C->A 17: the graph equals the kernel.
   A's id 5 names nsidd's own namespace: that row carries its inode and is active.
   Delete C: C's table and A's and B's entries for C go in one batch; history shows C once.
2. 300 namespaces, each with ids for 10 others; 150 deleted in one burst: graph equals kernel."""
import json
import os
import signal
import subprocess
import time

import nsidtest as t

t.sandbox()
kernel = t.NsidTable()


def mirror_graph(sock):
    g = json.loads(t.nsidctl('-j', 'graph', socket_path=sock).stdout)
    out = {}
    for table in g:
        entries = {e['nsid']: (e['current-nsid'] if e['current-nsid'] is not None else -1)
                   for e in table['entries']}
        if entries or table['observer'] == 'self':
            out[table['observer']] = entries
    return out


def kernel_graph():
    return {o: tab for o, tab in kernel.graph().items() if tab or o == 'self'}


def settle(sock, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        got, want = mirror_graph(sock), kernel_graph()
        if got == want or time.monotonic() > deadline:
            return got, want
        time.sleep(0.2)


def check(got, want, what):
    assert got == want, '%s:\nmirror %s\nkernel %s' % (what, got, want)
    t.log('%s: graph equals the kernel (%d tables, %d entries)'
          % (what, len(want), sum(len(v) for v in want.values())))


for n in ('A', 'B', 'C'):
    t.ip_batch(['netns add ' + n, 'netns set %s auto' % n])
for cmd in (['-n', 'A', 'netns', 'set', 'B', '3'], ['-n', 'A', 'netns', 'set', 'C', '4'],
            ['-n', 'B', 'netns', 'set', 'C', '9'], ['-n', 'C', 'netns', 'set', 'A', '17']):
    subprocess.run(['ip'] + cmd, check=True)
# Our own namespace under a name, so that A can be given an id for it (self has none for itself).
open('/run/netns/ROOT', 'w').close()
subprocess.run(['mount', '--bind', '/proc/self/ns/net', '/run/netns/ROOT'], check=True)
subprocess.run(['ip', '-n', 'A', 'netns', 'set', 'ROOT', '5'], check=True)
d = t.Daemon('--scope', 'host')
assert d.status()['scope'] == 'host'
got, want = settle(d.socket)
check(got, want, 'A, B, C')
ids = {n: v for n, v in kernel.by_name().items()}
assert got[ids['A']] == {3: ids['B'], 4: ids['C'], 5: -1}, got
assert got[ids['B']] == {9: ids['C']} and got[ids['C']] == {17: ids['A']}, got


# Rows of other tables name their peer through self's row for it: C's entry 17 is A.
def entry(observer, nsid):
    for table in json.loads(t.nsidctl('-j', 'graph', socket_path=d.socket).stdout):
        if table['observer'] == observer:
            return next((e for e in table['entries'] if e['nsid'] == nsid), None)
    return None


def peer_names(observer, nsid):
    e = entry(observer, nsid)
    return e and (e['peer']['names'], e['state'])


t.wait_for('identities in other tables',
           lambda: peer_names(ids['C'], 17) == (['A'], 'mounted') and
           peer_names(ids['A'], 3) == (['B'], 'mounted'))
t.log("C's id 17 and A's id 3 are named A and B, mounted")


own = entry(ids['A'], 5)
assert own['state'] == 'active' and own['current-nsid'] is None, own
assert own['peer']['inode'] == os.stat('/proc/self/ns/net').st_ino, own
t.log("A's id 5 names nsidd's own namespace: inode %d, active" % own['peer']['inode'])

# nsidctl graph names each observer as self's table does.
labels = {x['observer']: x['observer-label']
          for x in json.loads(t.nsidctl('-j', 'graph', socket_path=d.socket).stdout)}
assert labels[ids['A']] == 'A' and labels[ids['C']] == 'C' and labels['self'] is None, labels
human = t.nsidctl('graph', socket_path=d.socket).stdout
assert 'Observer %d (A):' % ids['A'] in human and 'Observer self:' in human, human

w = t.Varlink(d.socket)
w.send('io.nsidd.Registry.Watch', {}, more=True)
w.receive()
subprocess.run(['ip', 'netns', 'del', 'C'], check=True)
got, want = settle(d.socket)
check(got, want, 'after deleting C')
assert ids['C'] not in got and 4 not in got[ids['A']] and got.get(ids['B'], {}) == {}, got
# The purge of C: its own DEL in self, then A's and B's entries for C, with no other change
# between them (one batch, one sweep); the kernel's own DELs for those entries that follow are
# already applied and change nothing.
changes = []
while True:
    m = w.receive()
    p = m['parameters']
    if p['kind'] != 'update':  # C losing its name and state before its DEL
        changes.append((p['kind'], p['observer'], p['entry']['nsid']))
    if sum(1 for c in changes if c[0] == 'purge') >= 3 or len(changes) > 10:
        break
t.log('changes: %s' % changes)
c_id = str(ids['C'])
assert changes[0] == ('del', 'self', ids['C']), changes
assert set(changes[1:4]) == {('purge', c_id, 17), ('purge', str(ids['A']), 4),
                             ('purge', str(ids['B']), 9)}, changes
w.close()
history = d.call('io.nsidd.Registry.History')['parameters']['deaths']
assert [h['nsid'] for h in history] == [ids['C']], history
# Deleted with `ip netns del`: its name is a former one by the time it dies.
assert history[0]['peer']['former_names'] == ['C'] and history[0]['peer']['names'] == [] \
    and history[0]['peer']['cookie'], history
d.stop()
subprocess.run(['ip', 'netns', 'del', 'A'], check=True)
subprocess.run(['ip', 'netns', 'del', 'B'], check=True)
subprocess.run(['umount', '/run/netns/ROOT'], check=True)
os.unlink('/run/netns/ROOT')

# 2. 300 namespaces with cross ids, 150 deleted in one burst.
N, K = 300, 10
names = ['h%d' % i for i in range(N)]
t.ip_batch(['netns add ' + n for n in names] + ['netns set %s auto' % n for n in names])
for i, n in enumerate(names):
    t.ip_batch_in(n, ['netns set %s auto' % names[(i + j) % N] for j in range(1, K + 1)])
ids_by_name = kernel.by_name()
d = t.Daemon('--scope', 'host')
t.log('host scope ready after %.3f s with %d tables' % (d.ready_after, N + 1))
got, want = settle(d.socket, 30)
check(got, want, '%d namespaces x %d cross ids' % (N, K))


def sweeps():
    text = d.call('io.nsidd.Registry.GetMetrics')['parameters']['text']
    return int(float(next(line.split()[-1] for line in text.splitlines()
                          if line.startswith('nsidd_purge_sweeps_total'))))


before, sweeps_before = d.status(), sweeps()
# nsidd is held (SIGSTOP) through the burst, so that all of it waits in the socket and is read
# in one wakeup, whatever the machine's speed: one batch, hence exactly one sweep.
os.kill(d.proc.pid, signal.SIGSTOP)
try:
    doomed = [ids_by_name[n] for n in names[::2]]
    t.ip_batch(['netns del ' + n for n in names[::2]])
    t.wait_for('the kernel to finish the burst', lambda: not kernel.by_nsid(doomed))
    time.sleep(0.2)  # the survivors' DELs come from the same cleanup runs
finally:
    os.kill(d.proc.pid, signal.SIGCONT)
got, want = settle(d.socket, 30)
check(got, want, 'after deleting %d in one burst' % (N // 2))
after, sweeps_after = d.status(), sweeps()
batches, swept = after['batches'] - before['batches'], sweeps_after - sweeps_before
t.log('%d deaths and their %d table purges: %d batch, %d sweep; entries %d -> %d'
      % (N // 2, N // 2, batches, swept, before['entries'], after['entries']))
assert after['resyncs'] == before['resyncs'] and after['overruns'] == 0, after
assert batches == 1 and swept == 1, (batches, swept)
d.stop()
t.log('ok')
