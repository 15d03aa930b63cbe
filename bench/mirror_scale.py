#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Bootstrap time (cold, and a restart with saved ids) and memory of a real nsidd at N existing ids, in a sandbox netns, and
`nsidctl -j list` against `ip -j netns list-id` (time and completeness).
The RSS is read twice: for nsidd binding its own socket (the tests' way), and started on held
sockets as the shipped units start it (nsidd.socket, nsidd-netlink.socket). The first also
counts the NSS module that resolves the `nsidd` group where /etc/group lacks it, as in this
sandbox; an installed nsidd (sysusers makes the group) is given its socket and loads none.
Usage (root): python3 bench/mirror_scale.py [N ...]     (default: 3000 10000)"""
import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '../tests/integration'))
import nsidtest as t  # noqa: E402

t.sandbox()
sizes = [0] + ([int(a) for a in sys.argv[1:]] or [3000, 10000])
done = 0
for n in sizes:
    if n > done:
        t.ip_batch(['netns add m%d' % i for i in range(done, n)])
        t.ip_batch(['netns set m%d auto' % i for i in range(done, n)])
    done = n
    cache = '/run/nsidd-test/ids'
    if os.path.exists(cache):
        os.unlink(cache)
    d = t.Daemon('--metrics-listen', '127.0.0.1:19478', '--id-cache', cache)
    rss_ready = d.rss_kib()
    time.sleep(1)  # the first discovery pass ends (and returns what the bootstrap freed)
    rss_settled = d.rss_kib()
    t0 = time.monotonic()
    for _ in range(200):
        urllib.request.urlopen('http://127.0.0.1:19478/metrics', timeout=5).read()
    scrape = (time.monotonic() - t0) / 200
    c = t.Varlink(d.socket)
    t0 = time.monotonic()
    for _ in range(200):
        c.call('io.nsidd.Registry.GetMetrics')
    getmetrics = (time.monotonic() - t0) / 200
    c.close()
    t0 = time.monotonic()
    listed = json.loads(t.nsidctl('-j', 'list', socket_path=d.socket).stdout)
    ctl = time.monotonic() - t0
    t0 = time.monotonic()
    ip = json.loads(subprocess.run(['ip', '-j', 'netns', 'list-id'], capture_output=True,
                                   text=True).stdout or '[]')
    iptime = time.monotonic() - t0
    print('N=%d: ready after %.0f ms (process start to first answer); RSS %d KiB when ready, '
          '%d KiB 1 s later, %d KiB after serving the list; '
          'nsidctl -j list %d entries in %.0f ms; ip -j netns list-id %d entries in %.0f ms'
          % (n, d.ready_after * 1000, rss_ready, rss_settled, d.rss_kib(), len(listed),
             ctl * 1000, len(ip), iptime * 1000), flush=True)
    print('      metrics: HTTP scrape %.2f ms, Varlink GetMetrics %.2f ms (mean of 200, client '
          'included)' % (scrape * 1000, getmetrics * 1000), flush=True)
    d.stop()
    # A restart in the same boot: the ids saved at stop spare the GETs.
    d = t.Daemon('--metrics-listen', 'none', '--id-cache', cache)
    print('      restart with the ids saved at stop: ready after %.0f ms' % (d.ready_after * 1000),
          flush=True)
    d.stop()
    held = t.Activation('/run/nsidd-test/held.sock')
    p, _ = held.start()
    time.sleep(1)  # settled, as above
    with open('/proc/%d/status' % p.pid) as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith('VmRSS:'))
    entries = len(held.call('io.nsidd.Registry.List')['entries'])
    print('      socket-activated (as installed): RSS %d KiB settled, with %d entries'
          % (rss, entries), flush=True)
    p.terminate()
    p.wait()
    held.listener.close()
    held.events.close()
    os.unlink('/run/nsidd-test/held.sock')
