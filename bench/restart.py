#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Restart with the id cache at N named namespaces with ids, in a sandbox netns: each nsidd
binary given is started once cold (to write its cache), then ROUNDS times warm, the binaries
taking turns so that the machine's noise falls on all alike. Reported per binary: the time from
process start to the first answer (as bench/mirror_scale.py), the start-up time nsidd logs
("ready in"), what it opened, and RSS 1 s after ready.
Usage (root): python3 bench/restart.py [N] [ROUNDS] [NSIDD ...]
              (default: 10000 5 build/daemon/nsidd)"""
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '../tests/integration'))
import nsidtest as t  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
binaries = [os.path.abspath(b) for b in sys.argv[3:]] or [t.NSIDD]
t.sandbox()
t.ip_batch(['netns add m%d' % i for i in range(n)])
t.ip_batch(['netns set m%d auto' % i for i in range(n)])
runs = {b: [] for b in binaries}
for r in range(rounds + 1):
    for i, binary in enumerate(binaries):
        t.NSIDD = binary
        cache = '/run/nsidd-test/ids-%d' % i
        d = t.Daemon('--id-cache', cache)
        ready = d.ready_after
        time.sleep(1)
        rss = d.rss_kib()
        d.stop()
        if r == 0:
            continue  # cold: it wrote the cache
        log = d.log()
        logged = re.search(r'ready in (\d+) ms', log)
        opened = re.search(r'opened (\d+) namespaces', log)
        runs[binary].append((ready * 1000, int(logged.group(1)) if logged else None,
                             int(opened.group(1)) if opened else None, rss))
print('%d namespaces, %d warm restarts each' % (n, rounds))
for binary, rs in runs.items():
    ready = [x[0] for x in rs]
    print('%s\n  first answer after %s ms (median %.0f); logged ready in %s ms; opened %s; '
          'RSS 1 s after ready %s KiB' % (
              binary, ' '.join('%.0f' % x for x in ready), statistics.median(ready),
              ' '.join(str(x[1]) for x in rs), ' '.join(str(x[2]) for x in rs),
              ' '.join(str(x[3]) for x in rs)))
