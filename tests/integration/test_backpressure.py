#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Clients that send and never read: 40 connections pipelining 4000 GetMetrics each. nsidd stops
reading a client's requests while its replies wait (backpressure) and bounds all clients'
unsent output together, so its memory stays bounded and other clients are served."""
import socket
import threading
import time

import nsidtest as t

t.sandbox()
t.ip_batch(['netns add b%d' % i for i in range(20)] + ['netns set b%d auto' % i for i in range(20)])
d = t.Daemon()
rss_before = d.rss_kib()
request = b'{"method":"io.nsidd.Registry.GetMetrics"}\0' * 4000
hogs = []


def hog():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(d.socket)
    s.settimeout(20)
    hogs.append(s)
    try:
        s.sendall(request)  # blocks once nsidd stops reading: that is the point
    except OSError:
        pass


threads = [threading.Thread(target=hog, daemon=True) for _ in range(40)]
for th in threads:
    th.start()
time.sleep(3)
rss = d.rss_kib()
t.log('40 clients x 4000 GetMetrics, none reading: RSS %d KiB (before: %d KiB)' % (rss, rss_before))
assert t.SANITIZED or rss < 100 * 1024, rss
started = time.monotonic()
assert 'version' in d.status()
t.log('another client served in %.0f ms' % ((time.monotonic() - started) * 1000))
assert time.monotonic() - started < 10
for s in hogs:
    s.close()
assert 'version' in d.status()
d.stop()
t.log('ok')
