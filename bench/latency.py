#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Event latency from the kernel to a Watch client: an id is assigned (RTM_NEWNSID, sent here
on a raw netlink socket; the kernel emits the event before it answers), and the time until a
Varlink Watch client holds the matching `new` change is measured, Python client included.
Usage (root): python3 bench/latency.py [SAMPLES] [BACKGROUND_IDS]     (default: 500 0)"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '../tests/integration'))
import nsidtest as t  # noqa: E402

t.sandbox()
samples = int(sys.argv[1]) if len(sys.argv) > 1 else 500
background = int(sys.argv[2]) if len(sys.argv) > 2 else 0
if background:
    t.ip_batch(['netns add bg%d' % i for i in range(background)] +
               ['netns set bg%d auto' % i for i in range(background)])
t.ip_batch(['netns add l%d' % i for i in range(samples)])
d = t.Daemon()
w = t.Varlink(d.socket)
w.send('io.nsidd.Registry.Watch', {}, more=True)
w.receive()  # the start marker

ids = t.Assigner()
lat, acks = [], []
for i in range(samples):
    fd = os.open('/run/netns/l%d' % i, os.O_RDONLY)
    t0 = time.perf_counter()
    ids.send(fd)
    ids.ack()  # the event was queued before it
    acks.append((time.perf_counter() - t0) * 1e6)
    while True:
        p = w.receive()['parameters']
        if p['kind'] == 'new':
            break
    lat.append((time.perf_counter() - t0) * 1e6)
    os.close(fd)
worst = sorted(range(len(lat)), key=lambda i: -lat[i])[:3]
print("slowest samples (index: us):", [(i, int(lat[i])) for i in worst])
lat.sort()
print('%d NEW events with %d other ids in the table: kernel -> nsidd -> Watch client latency '
      'p50 %.0f us, p90 %.0f us, p99 %.0f us, max %.0f us (mean %.0f us)'
      % (samples, background, lat[len(lat) // 2], lat[len(lat) * 9 // 10],
         lat[len(lat) * 99 // 100], lat[-1], statistics.mean(lat)))
acks.sort()
print('    the kernel alone (RTM_NEWNSID to its ACK): p50 %.0f us, p99 %.0f us'
      % (acks[len(acks) // 2], acks[len(acks) * 99 // 100]))
pauses = [line.split()[-1] for line in t.nsidctl('metrics', socket_path=d.socket).stdout.split('\n')
          if line.startswith('nsidd_event_read_pauses_total')]
print('    storm pauses of the event socket during the run (each delays what it holds back): %s'
      % (pauses[0] if pauses else 'unknown'))
w.close()
d.stop()
