#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The core mirror through a storm, in a sandbox netns.

3000 ids exist before nsidd starts (a dump returns at most 1158 of them on Linux >= 6.10, and
`ip netns list-id` 134): `nsidctl -j list` must hold all 3000. Then 50 sparse explicit ids
(100000+k) and 1000 more auto ids are added and 2500 namespaces deleted in one `ip -batch`
burst: once settled, the mirror equals the kernel's table read by per-id GET probes.
Usage: test_storm.py [--rcvbuf BYTES]  (with a tiny buffer: overruns, resyncs, still exact)
"""
import json
import sys

import nsidtest as t

t.sandbox()
rcvbuf = None
if '--rcvbuf' in sys.argv:
    rcvbuf = sys.argv[sys.argv.index('--rcvbuf') + 1]

BEFORE, SPARSE, AFTER, DELETE = 3000, 50, 1000, 2500
t.ip_batch(['netns add a%d' % i for i in range(BEFORE)])
t.ip_batch(['netns set a%d auto' % i for i in range(BEFORE)])
kernel = t.NsidTable()
assert len(kernel.table()) == BEFORE

args = ['--history', '4096'] + (['--rcvbuf', rcvbuf] if rcvbuf else [])
d = t.Daemon(*args)
t.log('nsidd ready after %.3f s with %d ids' % (d.ready_after, BEFORE))
listed = json.loads(t.nsidctl('-j', 'list', socket_path=d.socket).stdout)
assert isinstance(listed, list)
assert all('nsid' in e and 'current-nsid' in e for e in listed)
t.check_equal({e['nsid'] for e in listed}, kernel.table(), 'nsidctl -j list at start')
dumped = t.subprocess.run(['ip', 'netns', 'list-id'], capture_output=True, text=True).stdout
t.log('for comparison, ip netns list-id printed %d lines' % len(dumped.splitlines()))

sparse = [100000 + k for k in range(SPARSE)]
t.ip_batch(['netns add s%d' % k for k in range(SPARSE)] +
           ['netns set s%d %d' % (k, sparse[k]) for k in range(SPARSE)] +
           ['netns add b%d' % i for i in range(AFTER)] +
           ['netns set b%d auto' % i for i in range(AFTER)])
got, want = t.settle(d, kernel, sparse)
t.check_equal(got, want, 'after adding sparse and auto ids')

# One burst: every a*, and the first 25 s* (sparse ids past any dump's cut).
victims = ['a%d' % i for i in range(BEFORE)][:DELETE - SPARSE // 2] + \
          ['s%d' % k for k in range(SPARSE // 2)]
if rcvbuf:
    # Hold nsidd still through the burst, as a busy host might: the kernel overruns the tiny
    # buffer for certain, instead of only when nsidd happens to fall behind.
    d.proc.send_signal(t.signal.SIGSTOP)
t.ip_batch(['netns del %s' % n for n in victims])
if rcvbuf:
    t.time.sleep(1.0)  # the cleanup runs send their DELs within ~100 ms
    d.proc.send_signal(t.signal.SIGCONT)
got, want = t.settle(d, kernel, sparse)
t.check_equal(got, want, 'after deleting %d namespaces in one burst' % len(victims))
assert len(want) == BEFORE + SPARSE + AFTER - len(victims), len(want)

status = d.status()
t.log('status:', json.dumps(status))
if rcvbuf:
    assert status['overruns'] >= 1, status
    # The start-up read plus at least one after an overrun.
    assert status['resyncs'] >= 2, status
else:
    assert status['batches'] >= 1 and status['events'] >= len(victims), status
# Every death recorded exactly once, whether seen as an event or found by a resync.
history = d.call('io.nsidd.Registry.History')['parameters']['deaths']
assert len(history) == len(victims), (len(history), len(victims))
assert len({h['nsid'] for h in history}) == len(victims)
t.log('nsidd RSS %d KiB with %d entries' % (d.rss_kib(), len(want)))
d.stop()
t.log('ok')
