#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""One full holder pass on a node-like host, with the real nsidd: NS named namespaces with ids
(default 500), MOUNTS mounts in all (default 2000: the namespaces' and tmpfs mounts), PROCS
processes (default 5000) holding FDS fds each (default 50: /dev/null, pipes, Unix sockets,
regular files). Then a namespace is orphaned (its creator dies; only a socket of another
process holds it), which makes an fd search due that must copy every socket to identify it.
Prints the search's wall and CPU time (nsidd's debug log), nsidd's own CPU meanwhile, and the
longest GetStatus took while asked every 5 ms during the pass.
Usage (root): python3 bench/holder_pass.py [NS] [MOUNTS] [PROCS] [FDS]"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '../tests/integration'))
import nsidtest as t  # noqa: E402

args = [int(a) for a in sys.argv[1:5]]
ns, mounts, procs, fds = args + [500, 2000, 5000, 50][len(args):]
t.sandbox()
t.ip_batch(sum((['netns add n%d' % i, 'netns set n%d auto' % i] for i in range(ns)), []))
os.makedirs('/run/m', exist_ok=True)
have = sum(1 for _ in open('/proc/self/mountinfo'))
subprocess.run(['sh', '-c', 'for i in $(seq %d); do mkdir /run/m/$i; mount -t tmpfs t /run/m/$i; '
                'done' % max(0, mounts - have)], check=True)
children = t.busy_host(procs, fds)

def cpu_usec(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1e6 / os.sysconf('SC_CLK_TCK')


HOLDER = r'''
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
own = os.open('/proc/self/ns/net', os.O_RDONLY)
ns = os.open(sys.argv[1], os.O_RDONLY)
libc.setns(ns, 0x40000000)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
libc.setns(own, 0x40000000)
os.close(ns)
print('held', flush=True)
sys.stdin.read()
'''
# Asks GetStatus every 5 ms until stdin closes; prints the longest wait and the count.
ASKER = r'''
import os, sys, threading, time
sys.path.insert(0, %r)
import nsidtest as t
c = t.Varlink(sys.argv[1])
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
print('asking', flush=True)
slowest, n = 0.0, 0
while not done.is_set():
    asked = time.monotonic()
    c.call('io.nsidd.Registry.GetStatus')
    slowest = max(slowest, time.monotonic() - asked)
    n += 1
    time.sleep(0.005)
print(slowest, n, flush=True)
''' % os.path.join(os.path.dirname(os.path.abspath(__file__)), '../tests/integration')
try:
    d = t.Daemon('--log-level', 'debug', '--discovery-interval', '1', '--orphan-grace', '5',
                 '--id-cache', 'none')
    t.wait_for('every namespace identified', lambda: all(
        e['peer']['cookie'] for e in t.entries(d).values()), timeout=120)
    time.sleep(3)  # a pass or two: nothing is due
    child = subprocess.Popen(['unshare', '--net', 'sleep', '600'])
    time.sleep(0.2)
    t.ip_batch(['netns attach orphan %d' % child.pid, 'netns set orphan auto'])
    holder = subprocess.Popen([sys.executable, '-c', HOLDER, '/proc/%d/ns/net' % child.pid],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == 'held'
    t.ip_batch(['netns del orphan'])
    child.kill()
    child.wait()
    # The asker is a process of its own: the waits it measures are nsidd's, not this script's.
    asker = subprocess.Popen([sys.executable, '-c', ASKER, d.socket], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert asker.stdout.readline().strip() == 'asking'
    before = cpu_usec(d.proc.pid)
    mark = len(d.log())
    line = t.wait_for('the fd search', lambda: re.search(
        r'Fd search ended in (\d+) ms \((\d+) ms of CPU in its process\): (\d+) entries, '
        r'(\d+) namespaces identified', d.log()[mark:]), timeout=300, interval=0.05)
    asker.stdin.close()
    slowest, asked = map(float, asker.stdout.readline().split())
    slices = [int(x) for x in re.findall(r'last slice (\d+) us', d.log()[mark:])]
    own_cpu = (cpu_usec(d.proc.pid) - before) / 1000
    held = t.wait_for('the orphan fd-held', lambda: [e for e in t.entries(d).values()
                                                     if e['state'] == 'fd_held'], timeout=30)
    print('%d namespaces, %d mounts, %d processes x %d fds: one fd search %s ms wall, %s ms CPU '
          '(its process), %s entries, %s identified; nsidd itself %.0f ms CPU meanwhile; '
          'GetStatus asked %d times every 5 ms meanwhile, longest %.1f ms; the /proc pass\'s '
          'last slices %s us; orphan %s with holder %s' % (
              ns, sum(1 for _ in open('/proc/self/mountinfo')), procs, fds, line.group(1),
              line.group(2), line.group(3), line.group(4), own_cpu, asked, slowest * 1000,
              slices, held[0]['state'], held[0]['peer']['holders']['fds']))
    holder.kill()
    d.stop()
finally:
    t.end_busy_host(children)
