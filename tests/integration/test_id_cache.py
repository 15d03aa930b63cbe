#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A wrong line in the id cache costs that line alone: 20 named namespaces, nsidd stopped, the
ids of two lines swapped, nsidd restarted. The 18 right rows have their names and cookies once
the first discovery pass has run (it starts right after READY=1, after the clients then waiting:
docs/design.md, "History across restarts") and never lose them; the two swapped rows are right
after one discovery pass; the mirror stays the kernel's table throughout."""
import os
import time

import nsidtest as t

t.sandbox()
os.makedirs('/run/nsidd-test', exist_ok=True)
cache = '/run/nsidd-test/ids'
names = ['c%02d' % i for i in range(20)]
t.ip_batch(sum((['netns add ' + n, 'netns set %s auto' % n] for n in names), []))
ids = t.NsidTable().by_name()
truth = {ids[n]: (n, t.identity('/run/netns/' + n)[0]) for n in names}  # nsid -> (name, cookie)


def rows(d):
    return {e['nsid']: (e['peer']['names'], e['peer']['cookie']) for e in t.entries(d).values()}


def known(d):
    return all(r == ([truth[n][0]], truth[n][1]) for n, r in rows(d).items())


d = t.Daemon('--id-cache', cache, '--discovery-interval', '0.2')
t.wait_for('every row identified', lambda: known(d))
d.stop()
# Swap the ids of two lines.
lines = open(cache).read().splitlines()
a, b = ids['c03'], ids['c11']
swapped = 0
for i, line in enumerate(lines[1:], 1):
    f = line.split(' ')
    if f[1] != '-' and int(f[1]) in (a, b):  # ('-': a namespace without an id, elsewhere)
        f[1] = str(b if int(f[1]) == a else a)
        lines[i] = ' '.join(f)
        swapped += 1
assert swapped == 2, lines
with open(cache, 'w') as f:
    f.write('\n'.join(lines) + '\n')

d = t.Daemon('--id-cache', cache, '--discovery-interval', '0.2')


def others_right(got):
    return all(got[n] == ([name], cookie) for n, (name, cookie) in truth.items() if n not in (a, b))


# The first pass comes at once after start (a client already waiting is answered first).
t.wait_for('the 18 right rows identified', lambda: others_right(rows(d)), timeout=5)
identified_after = time.monotonic() - d.started
deadline = time.monotonic() + 10
right_since = None
while time.monotonic() < deadline:
    got = rows(d)
    assert set(got) == set(truth), (sorted(got), sorted(truth))
    for nsid, (name, cookie) in truth.items():
        if nsid not in (a, b):
            assert got[nsid] == ([name], cookie), 'row %d lost its identity: %s' % (nsid, got[nsid])
    if right_since is None and all(got[n] == ([truth[n][0]], truth[n][1]) for n in (a, b)):
        right_since = time.monotonic() - d.started
    time.sleep(0.05)
assert right_since is not None, 'the swapped rows never became right: %s' % {
    n: rows(d)[n] for n in (a, b)}
t.log('the other 18 rows right %.2f s after start and at every check for 10 s after; swapped pair '
      'right %.2f s after start' % (identified_after, right_since))
# One discovery pass (0.2 s apart) after start, with ample room for a slow machine.
assert right_since < 5, right_since
d.stop()
t.log('ok')
