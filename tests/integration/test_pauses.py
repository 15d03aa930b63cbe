#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Storm pauses (docs/design.md, "Storms"), in a sandbox netns. A client that assigns ids one
at a time and waits for each on a Watch is paused at most once per doubling of the events it
caused (a probe, which finds one event waiting and so no storm), however fast it goes. A
teardown storm afterwards leaves the mirror exact, and its deaths are logged in a few lines,
not one per batch."""
import os
import re
import time

import nsidtest as t

t.sandbox()
N = 300
t.ip_batch(['netns add one%d' % i for i in range(N)])
d = t.Daemon()
w = t.Varlink(d.socket)
w.send('io.nsidd.Registry.Watch', {}, more=True)
w.receive()  # the start marker

ids = t.Assigner()
for i in range(N):
    fd = os.open('/run/netns/one%d' % i, os.O_RDONLY)
    ids.send(fd)
    assert ids.ack() == 0, 'RTM_NEWNSID refused'
    os.close(fd)
    while w.receive()['parameters']['kind'] != 'new':
        pass
# Such a client is only ever probed (a pause that then finds one event, not a storm), each
# probe after twice as many fast reads as the last: 5 in 300 (probes after 8, 16, ... 128).
paused = t.metric(d, 'nsidd_event_read_pauses_total')
assert paused <= 8, '%d pauses for %d events that came one at a time' % (paused, N)
t.log('%d ids assigned one at a time, each seen on a Watch: %d pauses' % (N, paused))
w.close()

# A teardown storm: exact, and told in a few lines.
M = 2000
t.ip_batch(['netns add s%d' % i for i in range(M)] + ['netns set s%d auto' % i for i in range(M)])
kernel = t.NsidTable()
got, want = t.settle(d, kernel, timeout=60)
t.check_equal(got, want, '%d more created' % M)
t.ip_batch(['netns del s%d' % i for i in range(M)] + ['netns del one%d' % i for i in range(N)])
got, want = t.settle(d, kernel, timeout=60)
t.check_equal(got, want, 'after the teardown')
assert not want, want


def told():
    return [int(n) for n in re.findall(r'(\d+) peer namespaces died in a burst', d.log())]


t.wait_for('the burst logged', told)
time.sleep(2.5)  # the last line comes at most 2 s after its burst began
told = told()
# Each line waits for 100 ms without deaths (at most 2 s): a teardown of this size is a few
# lines, not one per batch. (A stretch of fewer than ten deaths between quiet moments is not
# logged: most are, none twice.)
assert 1 <= len(told) <= 25 and (M + N) // 2 <= sum(told) <= M + N, told
t.log('%d deaths logged in %d lines: %s; %d pauses' % (
    M + N, len(told), told, t.metric(d, 'nsidd_event_read_pauses_total')))
d.stop()
