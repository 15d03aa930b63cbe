#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The metrics listener: IPv4 and IPv6, a bad address refused at start (exit 2 naming the key), a
port in use refused with the reason (exit 1), a clean stop in well under a second, and a stuck
scraper that does not hold up the daemon."""
import socket
import subprocess
import time
import urllib.request

import nsidtest as t

t.sandbox()
t.ip_batch(['netns add m1', 'netns set m1 auto'])


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200 and r.headers['Content-Type'].startswith('text/plain'), r.headers
        return r.read().decode()


for listen, url in (('127.0.0.1:19481', 'http://127.0.0.1:19481/metrics'),
                    ('[::1]:19482', 'http://[::1]:19482/metrics')):
    d = t.Daemon('--metrics-listen', listen)
    assert 'nsidd_entries 1' in scrape(url)
    # A client that connects and sends nothing must not stop others or the daemon.
    host, port = listen.rsplit(':', 1)
    stuck = socket.create_connection((host.strip('[]'), int(port)))
    assert 'nsidd_entries 1' in scrape(url)
    assert 'version' in d.status()
    started = time.monotonic()
    d.stop()
    took = time.monotonic() - started
    stuck.close()
    assert d.proc.returncode == 0
    t.log('%s: scraped; stopped in %.0f ms' % (listen, took * 1000))
    assert took < 5, took  # it was ~1 s with the previous exporter; a bound noise cannot cross

# The port is taken: exit 1, saying so.
holder = socket.socket()
holder.bind(('127.0.0.1', 19483))
holder.listen(1)
r = subprocess.run([t.NSIDD, '--config', '/dev/null', '--socket', '/run/nsidd-test/m.sock',
                    '--id-cache', 'none', '--metrics-listen', '127.0.0.1:19483'],
                   capture_output=True, text=True, timeout=30)
holder.close()
assert r.returncode == 1 and 'Address already in use' in r.stderr, (r.returncode, r.stderr)
t.log('port in use: exit 1, "%s"' % r.stderr.strip().splitlines()[-1][:100])
for bad in ('garbage', ':9477', '127.0.0.1:99999', '[::1]'):
    r = subprocess.run([t.NSIDD, '--config', '/dev/null', '--metrics-listen', bad],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and '--metrics-listen' in r.stderr, (bad, r.returncode, r.stderr)
t.log('garbage, :9477, 127.0.0.1:99999, [::1]: exit 2 naming --metrics-listen')
t.log('ok')
