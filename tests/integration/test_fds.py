#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Out of file descriptors: nsidd with 256 fds and 300 idle clients neither spins nor floods its
log, still answers root's nsidctl, closes idle connections after --idle-timeout, and recovers
when the clients go."""
import os
import subprocess
import time

import nsidtest as t

t.sandbox()
os.makedirs('/run/nsidd-test', exist_ok=True)
d = t.Daemon('--idle-timeout', '8')
d.stop()
# The same nsidd, now with 256 fds, hard limit included (so it cannot raise its own).
args = ['prlimit', '--nofile=256:256', '--'] + d.args
d.proc = t.track(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=d.stderr))
d.wait_ready()


def cpu_ticks():
    with open('/proc/%d/stat' % d.proc.pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])


idle = [t.Varlink(d.socket) for _ in range(300)]
time.sleep(0.5)
before = cpu_ticks()
time.sleep(3)
used = (cpu_ticks() - before) / os.sysconf('SC_CLK_TCK')
t.log('300 idle clients against 256 fds: nsidd used %.2f s of CPU in 3 s' % used)
assert used < 1.0, 'nsidd spins when out of fds: %.2f s of CPU in 3 s' % used
started = time.monotonic()
r = t.nsidctl('status', socket_path=d.socket)
took = time.monotonic() - started
t.log("root's nsidctl status answered in %.0f ms" % (took * 1000))
assert took < 10, took
lines = [l for l in d.log().splitlines() if 'file descriptors' in l or 'accept' in l]
t.log('log lines about it: %d' % len(lines))
assert len(lines) < 10, lines[:20]
for c in idle:
    c.close()
assert 'version' in d.status(), 'recovers when the clients go'
# Idle connections are closed after --idle-timeout.
c = t.Varlink(d.socket)
time.sleep(20)  # idle after 8 s, swept every 5 s: closed by 13 s, with room to spare
try:
    c.send('org.varlink.service.GetInfo')
    r = c.receive()
except (ConnectionResetError, BrokenPipeError):
    r = None
assert r is None, 'an idle connection outlived --idle-timeout: %r' % r
t.log('an idle connection is closed after --idle-timeout')
d.stop()
t.log('ok')
