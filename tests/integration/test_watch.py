#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Watch against real churn: create, set ids, burst delete. Changes arrive in order with a
gap-free seq, and replaying them over the List taken at the start gives the List at the end.
A watcher that never reads, while thousands of events happen, is cut off with WatcherTooSlow
and the daemon's memory stays bounded; other clients are served throughout."""
import threading
import time

import nsidtest as t

t.sandbox()
t.ip_batch(['netns add p%d' % i for i in range(50)] + ['netns set p%d auto' % i for i in range(50)])
# The cap holds about three bursts' changes (the deletion burst: ~350 KB), so that the reader
# below keeps up on a loaded machine (at half this, it was dropped in 1 of ~8 runs beside the
# rest of the suite), but not the whole storm (several MB): the watcher that never reads is.
d = t.Daemon('--max-output', '1048576')


def entries():
    return {e['nsid']: e for e in d.call('io.nsidd.Registry.List')['parameters']['entries']}


w = t.Varlink(d.socket)
w.send('io.nsidd.Registry.Watch', {}, more=True)
start = w.receive()['parameters']
state = set(entries())
assert len(state) == 50

received = []


def reader():
    while True:
        try:
            m = w.receive()
        except OSError:
            return
        if m is None:
            return
        received.append(m)


threading.Thread(target=reader, daemon=True).start()
slow = t.Varlink(d.socket)
slow.send('io.nsidd.Registry.Watch', {}, more=True)  # and never read while the storm runs
late = t.Varlink(d.socket, timeout=30)
late.send('io.nsidd.Registry.Watch', {}, more=True)  # reads only after the next sweep
rss_before = d.rss_kib()

N = 3000
t.ip_batch(['netns add q%d' % i for i in range(N)])
t.ip_batch(['netns set q%d auto' % i for i in range(N)])
t.ip_batch(['netns del q%d' % i for i in range(0, N, 2)] + ['netns del p%d' % i for i in range(25)])
kernel = t.NsidTable()
got, want = t.settle(d, kernel)
t.check_equal(got, want, 'mirror after the storm')

seq = start['seq']
kinds = {}
deadline = time.monotonic() + 30
index = 0
while state != want and time.monotonic() < deadline:
    if index == len(received):
        time.sleep(0.05)
        continue
    m = received[index]
    index += 1
    assert m.get('continues') and 'error' not in m, m
    p = m['parameters']
    assert p['seq'] == seq + 1, ('gap', seq, p['seq'])
    seq = p['seq']
    assert p['observer'] == 'self'
    kinds[p['kind']] = kinds.get(p['kind'], 0) + 1
    if p['removed']:
        state.discard(p['entry']['nsid'])
    else:
        state.add(p['entry']['nsid'])
assert state == want == set(entries()), 'replayed watch differs from List'
t.log('watch: %d changes replayed, gap-free, equal to List: %s' % (seq - start['seq'], kinds))
assert kinds.get('new', 0) >= N and kinds.get('del', 0) >= N // 2 + 25, kinds

# The watcher that never read: its unread output passed --max-output, so it was dropped.
assert d.status()['entries'] == len(want)
rss_after = d.rss_kib()
t.log('RSS %d KiB before the storm, %d KiB after' % (rss_before, rss_after))
assert t.SANITIZED or rss_after < rss_before + 16 * 1024, (rss_before, rss_after)
last = None
try:
    while True:
        m = slow.receive()
        if m is None:
            break
        last = m
except ConnectionResetError:
    pass
assert last is not None and last.get('error') == 'io.nsidd.Registry.WatcherTooSlow', last
# One that starts reading only after the next sweep (every 5 s) still gets the error: it replaced
# the backlog, and it waits for the client.
time.sleep(6)
count, last = 0, None
try:
    while True:
        m = late.receive()
        if m is None:
            break
        count, last = count + 1, m
except ConnectionResetError:
    pass
assert last is not None and last.get('error') == 'io.nsidd.Registry.WatcherTooSlow', (count, last)
t.log('a watcher that read only after 6 s: %d messages, then WatcherTooSlow' % count)
assert 'Dropped a Watch client' in d.log(), d.log()
w.close()
d.stop()
t.log('ok')
