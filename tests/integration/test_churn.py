#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Churn: what nsidd reads vanishes while it reads it. For 12 s, with passes every 50 ms:
- processes unshare a network namespace and exit within ms (gone between readdir, the open of
  /proc/PID/ns/net, the comm and cgroup reads; namespaces die while asked for their ids);
- processes keep an fd on a namespace whose name was deleted, and exit at random (fd-held
  peers whose holder goes in the middle of an fd search, which runs again and again);
- processes bind-mount a new namespace in a private mount namespace and exit (a mount table
  read, or the open through /proc/PID/root, races the exit).
nsidd never crashes, answers GetInfo throughout (each within 5 s: a slice is milliseconds), has
met every kind of holder along the way (Watch), and at the end its table equals the kernel's,
with nothing left of the churn."""
import os
import random
import subprocess
import threading
import time

import nsidtest as t

t.sandbox()
kernel = t.NsidTable()
d = t.Daemon('--discovery-interval', '0.05', '--orphan-grace', '0.2', '--assign-ids')
CHURN_SECONDS = 12
stop = threading.Event()
errors = []


def worker(fn):
    def run():
        rng = random.Random(fn.__name__)
        try:
            while not stop.is_set():
                fn(rng)
        except Exception as e:  # reported by the main thread
            errors.append('%s: %r' % (fn.__name__, e))
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def processes(rng):
    """Eight short-lived processes, each in a namespace of its own."""
    ps = [subprocess.Popen(['unshare', '--net', 'sleep', '%.3f' % rng.uniform(0, 0.05)])
          for _ in range(8)]
    for p in ps:
        p.wait()


def fd_holders(rng, n=[0]):
    """A named namespace, an fd on it kept by a child, the name deleted; the child exits at a
    random moment (often while nsidd searches fds for it)."""
    n[0] += 1
    name = 'churn%d' % n[0]
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    # nsidd (--assign-ids) may give it an id first.
    subprocess.run(['ip', 'netns', 'set', name, 'auto'], stderr=subprocess.DEVNULL)
    holder = subprocess.Popen(
        ['python3', '-c', 'import os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); '
         'print(flush=True); time.sleep(float(sys.argv[2]))', '/run/netns/' + name,
         '%.3f' % rng.uniform(0, 0.6)], stdout=subprocess.PIPE)
    holder.stdout.readline()  # the fd is open
    subprocess.run(['ip', 'netns', 'del', name], check=True)
    holder.wait()


def mounts_elsewhere(rng, n=[0]):
    """A namespace bind-mounted only in a private mount namespace that lives a few ms."""
    n[0] += 1
    path = '/run/churn-mnt%d' % n[0]
    open(path, 'w').close()
    subprocess.run(['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
                    'unshare --net=%s true && sleep %.3f' % (path, rng.uniform(0.02, 0.2))],
                   check=True)
    os.unlink(path)


seen = set()


def watch():
    client = t.Varlink(d.socket, timeout=60)
    client.send('io.nsidd.Registry.Watch', {}, more=True)
    while True:
        try:
            m = client.receive()
        except OSError:
            return
        if m is None:
            return
        e = m.get('parameters', {}).get('entry')
        if e and e.get('state'):
            seen.add(e['state'])
        if e and e.get('peer', {}).get('holders', {}).get('mounts'):
            if any('/root/run/churn-mnt' in p for p in e['peer']['holders']['mounts']):
                seen.add('mounted elsewhere')


threading.Thread(target=watch, daemon=True).start()
threads = [worker(f) for f in (processes, fd_holders, mounts_elsewhere)]
slowest, calls, begun = 0.0, 0, time.monotonic()
while time.monotonic() - begun < CHURN_SECONDS:
    started = time.monotonic()
    c = t.Varlink(d.socket, timeout=10)
    try:
        r = c.call('org.varlink.service.GetInfo')
    finally:
        c.close()
    assert r and 'error' not in r, r
    slowest = max(slowest, time.monotonic() - started)
    calls += 1
    assert d.proc.poll() is None, 'nsidd exited: %s' % d.log()[-2000:]
    time.sleep(0.02)
stop.set()
for th in threads:
    th.join(timeout=60)
assert not errors, errors
t.log('%d GetInfo calls during the churn, the slowest answered in %.0f ms' % (
    calls, slowest * 1000))
assert slowest < 5, 'the loop blocked for %.1f s' % slowest

deaths = t.deaths(d)
t.log('%d deaths in history; states met: %s' % (len(deaths), sorted(seen)))
for state in ('active', 'fd_held', 'mounted elsewhere'):
    assert state in seen, 'the churn never showed %s: %s' % (state, sorted(seen))
got, want = t.settle(d, kernel)
t.check_equal(got, want, 'after the churn')
left = [e for e in t.entries(d).values()
        if any('churn' in x for x in e['peer']['names'] + e['peer']['former_names'] +
               e['peer']['holders']['mounts'])]
assert not left, left
assert d.proc.poll() is None
d.stop()
t.log('ok')
