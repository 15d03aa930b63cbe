#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Peers replaced under a kept id while events are lost: old namespaces die and new ones take
their ids while nsidd is stopped (SIGSTOP) with a small receive buffer, so the DELs and NEWs
are lost in an overrun. After the resync every id must name its new holder, every old peer's
death must be in the history with its old identity, and nothing may be called pinned or fd-held."""
import os
import signal
import subprocess
import time

import nsidtest as t

t.sandbox()
kernel = t.NsidTable()


entries, deaths, metric = t.entries, t.deaths, t.metric


def run(count, rcvbuf):
    olds = ['old%d' % i for i in range(count)]
    news = ['new%d' % i for i in range(count)]
    started = time.monotonic()
    d = t.Daemon('--rcvbuf', str(rcvbuf), '--orphan-grace', '1', '--discovery-interval', '0.5',
                 '--id-cache', 'none', '--history', str(2 * count))
    t.ip_batch(['netns add ' + n for n in olds] + ['netns set %s auto' % n for n in olds])
    old = {n: t.identity('/run/netns/' + n)[0] for n in olds}
    ids = kernel.by_name()

    def identified():
        e = entries(d)
        return all((e.get(ids[n]) or {}).get('peer', {}).get('cookie') == old[n] for n in olds)
    t.wait_for('old identities', identified, timeout=60)
    t.log('%.1f s: %d old namespaces identified' % (time.monotonic() - started, count))
    d.proc.send_signal(signal.SIGSTOP)
    try:
        t.ip_batch(['netns del ' + n for n in olds])
        time.sleep(1.5)  # the cleanup runs
        t.ip_batch(['netns add ' + n for n in news] + ['netns set %s auto' % n for n in news])
    finally:
        d.proc.send_signal(signal.SIGCONT)
    new_ids = kernel.by_name()
    assert sorted(new_ids.values()) == sorted(ids.values()), 'the kernel reused the ids'
    new = {n: t.identity('/run/netns/' + n)[0] for n in news}
    t.nsidctl('resync', socket_path=d.socket)

    def right():
        e = entries(d)
        return all((e.get(new_ids[n]) or {}).get('peer', {}).get('cookie') == new[n]
                   for n in news)
    t.wait_for('every id named by its new holder', right, timeout=60)
    t.log('%.1f s: every id named by its new holder' % (time.monotonic() - started))
    got = entries(d)
    for n in news:
        e = got[new_ids[n]]
        assert e['peer']['names'] == [n], e
        assert e['state'] not in ('pinned', 'fd_held'), e
    dead = {x['peer']['cookie'] for x in deaths(d)}
    missing = set(old.values()) - dead
    assert not missing, '%d of %d deaths missing from the history' % (len(missing), count)
    assert metric(d, 'nsidd_purged_peers_total') >= count
    time.sleep(2)  # past the grace period: still no orphan
    assert metric(d, 'nsidd_peers{state="pinned"}') == 0
    assert metric(d, 'nsidd_peers{state="fd-held"}') == 0
    assert 'has had no process' not in d.log(), d.log()
    t.log('%d peers replaced under their ids during an overrun: %d deaths recorded, every id '
          'named by its new holder, no orphan' % (count, count))
    d.stop()
    t.ip_batch(['netns del ' + n for n in news])


run(8, 4096)
run(3000, 65536)
t.log('ok')
