#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""nsidctl against replies it must not trust (a fake server: malformed, endless) and against
people: options after the command, unknown commands, bad numbers, names that would move the
terminal's cursor, singular counts, JSON metrics, and a hint when a non-member is refused."""
import json
import os
import socket
import subprocess
import threading

import nsidtest as t

t.sandbox()
os.makedirs('/run/nsidd-test', exist_ok=True)
FAKE = '/run/nsidd-test/fake.sock'


def fake_server(reply):
    """Answers every call on FAKE with `reply` (bytes, or a callable that writes)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(FAKE)
    srv.listen(8)

    def serve():
        conn, _ = srv.accept()
        try:
            conn.recv(65536)
            reply(conn) if callable(reply) else conn.sendall(reply)
        except OSError:
            pass
        finally:
            conn.close()
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    return srv, th


def ctl(*args, sock=FAKE, user=None):
    cmd = [t.NSIDCTL, '--socket', sock] + list(args)
    if user:
        cmd = ['setpriv', '--reuid', user, '--regid', user, '--clear-groups'] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


# A reply of the wrong shape: exit 1 and a message, not an abort.
srv, th = fake_server(b'{"parameters":{"entries":[{"nsid":"x"}]}}\0')
r = ctl('list')
th.join(10)
srv.close()
os.unlink(FAKE)
assert r.returncode == 1 and 'malformed reply' in r.stderr, (r.returncode, r.stderr)
t.log('a malformed reply: exit 1, "%s"' % r.stderr.strip()[:80])


def endless(conn):
    chunk = b'{"parameters":{"text":"' + b'a' * (1 << 20)
    conn.sendall(chunk)
    for _ in range(200):  # 200 MiB without a terminating NUL
        conn.sendall(b'a' * (1 << 20))


srv, th = fake_server(endless)
p = subprocess.Popen([t.NSIDCTL, '--socket', FAKE, 'metrics'], stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE, text=True)
peak = 0
while p.poll() is None:
    try:
        with open('/proc/%d/status' % p.pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    peak = max(peak, int(line.split()[1]))
    except OSError:
        pass
err = p.stderr.read()
th.join(30)
srv.close()
os.unlink(FAKE)
assert p.returncode != 0, (p.returncode, err)
# RSS bounds are for normal builds: ASan's shadow memory and quarantine inflate RSS.
assert t.SANITIZED or peak < 160 * 1024, (peak, err)
t.log('an endless reply: exit %d at %d KiB RSS, "%s"' % (p.returncode, peak, err.strip()[:80]))

# People.
WEIRD = 'new\nline\x1b[2J'
for name in ('one', WEIRD):
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    subprocess.run(['ip', 'netns', 'set', name, 'auto'], check=True)
d = t.Daemon()
r = ctl('status', '-j', sock=d.socket)
assert r.returncode == 0 and json.loads(r.stdout)['entries'] == 2, (r.returncode, r.stderr)
r = ctl('bogus', sock=d.socket)
assert r.returncode == 2 and "unknown command 'bogus'" in r.stderr, r.stderr
r = ctl('history', '-n', '-1', sock=d.socket)
assert r.returncode == 2 and len(r.stderr) < 200 and 'not in range' in r.stderr, r.stderr
t.wait_for('names', lambda: 'one' in ctl('list', sock=d.socket).stdout)
out = ctl('list', sock=d.socket).stdout
assert '\x1b' not in out and 'new\\nline\\x1b[2J' in out, out
r = ctl('list', 'red', sock=d.socket)
assert r.returncode == 1 and 'no table for observer red' in r.stderr, r.stderr
r = ctl('-j', 'metrics', sock=d.socket)
assert 'nsidd_entries 2' in json.loads(r.stdout)['text'], r.stdout[:200]
subprocess.run(['ip', 'netns', 'del', WEIRD], check=True)
t.wait_for('one entry', lambda: '1 entry listed' in ctl('list', sock=d.socket).stdout)
r = ctl('resync', sock=d.socket, user='65534')
assert r.returncode == 3 and 'group nsidd' in r.stderr, (r.returncode, r.stderr)
t.log('options after the command, unknown command, -n -1, escaped names, "1 entry", -j '
      'metrics, the nsidd-group hint: as expected')
d.stop()
t.log('ok')
