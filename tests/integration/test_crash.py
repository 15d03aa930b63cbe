#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Crash and restart: nsidd is killed with SIGKILL in the middle of a storm and started again.
1. On sockets held as the service manager holds them (socket activation): the kernel queues the
   events of the down time into the held netlink socket, and the new nsidd reads them with no
   overrun; the mirror is exact within 1 s of the storm settling.
2. On its own sockets: the new nsidd bootstraps from the kernel, exact within 1 s as well."""
import os
import signal
import subprocess
import tempfile
import time

import nsidtest as t

t.sandbox()
kernel = t.Kernel()


def storm(tag, n=2000):
    """A storm as one `ip -batch` in the background: n namespaces with ids, half of them
    deleted in one burst, n/2 more created, a quarter of the rest deleted. Returns the
    process."""
    a = ['%s%d' % (tag, i) for i in range(n)]
    b = ['%sb%d' % (tag, i) for i in range(n // 2)]
    lines = (['netns add ' + x for x in a] + ['netns set %s auto' % x for x in a] +
             ['netns del ' + x for x in a[:n // 2]] + ['netns add ' + x for x in b] +
             ['netns set %s auto' % x for x in b] + ['netns del ' + x for x in a[n // 2::4]])
    f = tempfile.NamedTemporaryFile('w', suffix='.batch', delete=False)
    f.write('\n'.join(lines) + '\n')
    f.close()
    return t.track(subprocess.Popen(['ip', '-batch', f.name]))


def settled():
    """Waits until the kernel's table stops changing; returns it and when it settled."""
    last = kernel.table()
    while True:
        time.sleep(0.3)
        now = kernel.table()
        if now == last:
            return now, time.monotonic()
        last = now


def exact_after(mirror, want, since, what):
    deadline = since + 10
    while True:
        got = mirror()
        if got == want:
            took = time.monotonic() - since
            t.log('%s: mirror equals the kernel (%d entries) %.0f ms after the storm settled'
                  % (what, len(want), took * 1000))
            assert took <= 1.0, '%s: exact only after %.2f s' % (what, took)
            return
        assert time.monotonic() < deadline, '%s: %d entries, kernel %d' % (what, len(got),
                                                                         len(want))
        time.sleep(0.05)


def entries(call):
    return {e['nsid'] for e in call('io.nsidd.Registry.List')['entries']}


# 1. Socket activation: the netlink socket outlives the process.
held = t.Activation('/run/nsidd-crash.sock', rcvbuf=32 << 20)
p, _ = held.start()
s = storm('k')
t.wait_for('nsidd amid the storm', lambda: held.call('io.nsidd.Registry.GetStatus')['events']
           >= 1000, interval=0.02)
p.send_signal(signal.SIGKILL)
p.wait()
down = time.monotonic()
time.sleep(0.3)  # the storm goes on while nsidd is down
p, st = held.start()
t.log('restarted on the held sockets after %.0f ms down, mid-storm' % ((time.monotonic() - down)
                                                                       * 1000))
assert s.wait(120) == 0
want, since = settled()
exact_after(lambda: entries(held.call), want, since, 'after SIGKILL, on held sockets')
st = held.call('io.nsidd.Registry.GetStatus')
# The events of the down time waited in the held socket: read, and none lost.
assert st['overruns'] == 0 and st['events'] > 0, st
t.log('the new nsidd read %d queued and later events, %d overruns' % (st['events'],
                                                                      st['overruns']))
p.send_signal(signal.SIGTERM)
assert p.wait(10) == 0
t.ip_batch(['netns del ' + n for n in t.netns_names()])

# 2. Its own sockets: the events of the down time are gone, the bootstrap reads the table.
d = t.Daemon()
s = storm('o')
t.wait_for('nsidd amid the storm', lambda: d.status()['events'] >= 1000, interval=0.02)
d.proc.send_signal(signal.SIGKILL)
d.proc.wait()
time.sleep(0.3)
d = t.Daemon()  # the stale socket file of the killed one is replaced
assert s.wait(120) == 0
want, since = settled()
exact_after(d.mirror, want, since, 'after SIGKILL, on its own sockets')
d.stop()
t.log('ok')
