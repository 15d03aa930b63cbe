#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Watch replays to List, identity and state included.
1. A watcher from an empty table; 1000 namespaces get their ids in one burst, before nsidd can
   have looked at their mounts (their identities arrive later, as updates); 20 of them lose
   their name while this process keeps an fd on them (fd-held, named holder), 300 die. Every
   change up to List's seq, replayed from the start marker, gives exactly List's entries:
   cookie, inode, names, former names, holders, owner, state, since, source.
2. Watch(since: S) with S from a List resumes: the start marker says resumed, its seq is S, and
   the changes after S replayed over that List give the List at the end. A seq from before the
   kept window, or of another run, is answered resumed = false."""
import os
import threading
import time

import nsidtest as t

t.sandbox()
kernel = t.NsidTable()
d = t.Daemon('--discovery-interval', '0.2', '--orphan-grace', '1')


class Watcher:
    """A Watch stream read on a thread; `since` resumes."""

    def __init__(self, since=None):
        self.client = t.Varlink(d.socket, timeout=60)
        self.client.send('io.nsidd.Registry.Watch', {} if since is None else {'since': since},
                         more=True)
        marker = self.client.receive()
        assert marker and marker.get('continues') and 'error' not in marker, marker
        self.start = marker['parameters']
        assert self.start['kind'] == 'resync' and self.start['entry'] is None, self.start
        self.changes = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                m = self.client.receive()
            except OSError:
                return
            if m is None:
                return
            assert m.get('continues') and 'error' not in m, m
            self.changes.append(m['parameters'])

    def replay(self, over, upto):
        """`over` ({nsid: entry}) with every change of self's table up to seq `upto` applied;
        checks that seq has no gaps."""
        t.wait_for('changes up to seq %d' % upto,
                   lambda: self.changes and self.changes[-1]['seq'] >= upto or
                   upto == self.start['seq'], timeout=30)
        state, seq, kinds = dict(over), self.start['seq'], {}
        for c in self.changes:
            if c['seq'] > upto:
                break
            assert c['seq'] == seq + 1, ('gap', seq, c['seq'])
            seq = c['seq']
            kinds[c['kind']] = kinds.get(c['kind'], 0) + 1
            if c['observer'] != 'self':
                continue
            if c['removed']:
                assert state.pop(c['entry']['nsid'], None) is not None, c
            else:
                state[c['entry']['nsid']] = c['entry']
        assert seq == upto, (seq, upto)
        return state, kinds


def listed():
    p = d.call('io.nsidd.Registry.List')['parameters']
    return {e['nsid']: e for e in p['entries']}, p['seq']


def compare(replayed, want, what):
    assert set(replayed) == set(want), (what, sorted(set(replayed) ^ set(want))[:10])
    for nsid, e in want.items():
        assert replayed[nsid] == e, (what, nsid, replayed[nsid], e)
    t.log('%s: %d entries replayed equal List' % (what, len(want)))


# 1. From an empty table.
empty, seq0 = listed()
assert empty == {}
w = Watcher()
assert w.start['seq'] == seq0 and w.start['resumed'] is False, (w.start, seq0)
N = 1000
t.ip_batch(['netns add r%d' % i for i in range(N)])
t.ip_batch(['netns set r%d auto' % i for i in range(N)])
t.wait_for('every row named', lambda: (lambda e: len(e) == N and all(
    x['peer']['names'] for x in e.values()))(listed()[0]), timeout=60)
# Fds on 20 of them, kept while their names go: fd-held once the grace has passed.
kept = [os.open('/run/netns/r%d' % i, os.O_RDONLY) for i in range(20)]
t.ip_batch(['netns del r%d' % i for i in range(20)] +
           ['netns del r%d' % i for i in range(700, N)])
got, want = t.settle(d, kernel)
t.check_equal(got, want, 'mirror after the burst')


def settled():
    entries, seq = listed()
    states = [e['state'] for e in entries.values()]
    if (states.count('fd_held') == 20 and states.count('mounted') == N - 320 and
            all(e['peer']['cookie'] for e in entries.values())):
        return entries, seq
    return None


want, seq = t.wait_for('identities and states settled', settled, timeout=60)
replayed, kinds = w.replay({}, seq)
compare(replayed, want, 'watch from the start')
# The identities came after the ids: the rows were sent first without them, then updated.
assert kinds.get('new', 0) >= N and kinds.get('update', 0) >= N - 300, kinds
first = {}
for c in w.changes:
    if c['observer'] == 'self' and not c['removed'] and c['entry']['nsid'] not in first:
        first[c['entry']['nsid']] = c
unnamed_at_first = sum(1 for c in first.values() if not c['entry']['peer']['names'])
t.log('changes by kind %s; %d rows first sent before their name was known'
      % (kinds, unnamed_at_first))
held = [e for e in want.values() if e['state'] == 'fd_held']
for e in held:
    assert [f['pid'] for f in e['peer']['holders']['fds']] == [os.getpid()], e
    assert e['peer']['names'] == [] and e['peer']['former_names'], e

# 2. Resume from List's seq: more churn, a watcher that resumes after it.
before, since = listed()
for fd in kept[:10]:
    os.close(fd)  # those ten die
t.ip_batch(['netns del r%d' % i for i in range(20, 120)] +
           ['netns add z%d' % i for i in range(50)] + ['netns set z%d auto' % i for i in range(50)])


def settled_again():
    entries, seq = listed()
    if (len(entries) == N - 300 - 10 - 100 + 50 and
            all(e['peer']['cookie'] and e['state'] in ('mounted', 'fd_held')
                for e in entries.values())):
        return entries, seq
    return None


after, upto = t.wait_for('the second round settled', settled_again, timeout=60)
r = Watcher(since)
assert r.start['resumed'] is True and r.start['seq'] == since, (r.start, since)
replayed, kinds = r.replay(before, upto)
compare(replayed, after, 'watch resumed after seq %d' % since)
# The first watcher, from the start, agrees too.
replayed, _ = w.replay({}, upto)
compare(replayed, after, 'watch from the start, after the second round')
# Not resumable: before the kept window (or this run), or ahead of it.
for bad in (1, seq0 - 1, upto + 1000):
    x = Watcher(bad)
    assert x.start['resumed'] is False and x.start['seq'] >= upto, (bad, x.start)
    x.client.close()
m = t.Varlink(d.socket)
m.send('io.nsidd.Registry.Watch', {'since': 'yesterday'}, more=True)
reply = m.receive()
assert reply.get('error') == 'org.varlink.service.InvalidParameter', reply
t.log('since: resumed from seq %d (%d changes), refused out of the window' % (since, upto - since))
for fd in kept[10:]:
    os.close(fd)
d.stop()
t.log('ok')
