#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The metrics listener: IPv4 and IPv6, a bad address refused at start (exit 2 naming the key), a
port in use refused with the reason (exit 1), a clean stop in well under a second, a stuck
scraper that does not hold up the daemon, and hostile clients: wrong methods and paths,
malformed and oversized requests, more connections than allowed, one that never sends, one that
floods after its answer. None of them changes what the next scraper is served."""
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



def raw(port, data, timeout=5):
    """Sends `data` and reads until the server closes: the whole answer."""
    with socket.create_connection(('127.0.0.1', port), timeout=timeout) as c:
        c.sendall(data)
        out = b''
        while True:
            got = c.recv(65536)
            if not got:
                return out
            out += got


d = t.Daemon('--metrics-listen', '127.0.0.1:19484')
url = 'http://127.0.0.1:19484/metrics'
head = raw(19484, b'HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n')
assert head.startswith(b'HTTP/1.1 200 ') and head.endswith(b'\r\n\r\n'), head
length = int(head.split(b'Content-Length: ')[1].split(b'\r\n')[0])
assert length > 1000, head
for request, status in ((b'POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nab', b'405'),
                        (b'GET /secret HTTP/1.1\r\n\r\n', b'404'),
                        (b'\x00\x01\x02 nonsense\r\n\r\n', b'400'),
                        (b'GET / HTTP/1.1\r\nX: ' + b'a' * 9000 + b'\r\n\r\n', b'431'),
                        (b'GET /' + b'a' * 5000 + b' HTTP/1.1\r\n\r\n', b'431')):
    answer = raw(19484, request)
    assert answer.startswith(b'HTTP/1.1 ' + status + b' '), (request[:40], answer[:200])
t.log('HEAD: headers only (%d-byte body announced); POST 405, other path 404, garbage 400, '
      'oversized 431' % length)
# More connections than allowed: a new one evicts the oldest that is not being answered, and is
# served; one that never sends its request is closed at the request deadline (2 s).
stuck = [socket.create_connection(('127.0.0.1', 19484)) for _ in range(8)]
time.sleep(0.3)
assert 'nsidd_entries 1' in scrape(url), 'a ninth connection was not served'
stuck[0].settimeout(5)
assert stuck[0].recv(100) == b'', 'the oldest idle connection was not evicted'
assert 'version' in d.status()
for s in stuck[2:]:
    s.close()
started = time.monotonic()
stuck[1].settimeout(30)
assert stuck[1].recv(100) == b''
waited = time.monotonic() - started
assert 1.0 < waited < 6, waited
for s in stuck[:2]:
    s.close()
t.log('8 connections at most: a ninth evicts the oldest idle one and is served; a silent one '
      'is closed after %.1f s' % waited)
# A slowloris from another local user: 16 idle connections, each reconnected as it is closed.
# A scraper (2 s timeout, every 0.5 s) still gets at least 90 % of its scrapes.
loris = subprocess.Popen(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
                          'python3', '-c', """
import select, socket, time
conns = [socket.create_connection(('127.0.0.1', 19484)) for _ in range(16)]
end = time.monotonic() + 30
while time.monotonic() < end:
    readable, _, _ = select.select(conns, [], [], 0.05)
    for c in readable:
        conns.remove(c)
        c.close()
        conns.append(socket.create_connection(('127.0.0.1', 19484)))
"""])
t.track(loris)
time.sleep(1)
good = 0
for _ in range(30):
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            good += r.status == 200 and b'nsidd_entries 1' in r.read()
    except OSError:
        pass
    time.sleep(max(0, 0.5 - (time.monotonic() - started)))
assert loris.poll() is None, 'the slowloris stopped early'
loris.kill()
loris.wait()
t.log('16 idle connections of another user, reconnected as closed: %d of 30 scrapes served' % good)
assert good >= 27, good
# A client that floods after its answer is cut off; the daemon answers throughout.
flood = socket.create_connection(('127.0.0.1', 19484), timeout=5)
flood.sendall(b'GET /metrics HTTP/1.1\r\n\r\n')
sent = 0
try:
    while sent < 8 << 20:
        sent += flood.send(b'x' * 65536)
except OSError:
    pass
flood.close()
assert 'version' in d.status()
assert 'nsidd_entries 1' in scrape(url)
t.log('a client flooding after its answer: cut off after %d KiB sent' % (sent // 1024))
d.stop()
assert d.proc.returncode == 0

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
