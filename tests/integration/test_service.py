#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""nsidd as a systemd service, with the real protocols around it (no systemd as PID 1 here):
sd_notify (READY=1 only once the mirror is exact, WATCHDOG=1, STATUS=, RELOADING=1/READY=1,
STOPPING=1) on a datagram socket owned by the test; socket activation with both named fds,
including a restart while the test holds the netlink socket; bad configuration files; journal
entries (MESSAGE_ID, PRIORITY, CODE_*) through the journal's native socket."""
import os
import signal
import socket
import subprocess
import threading
import time

import nsidtest as t

t.sandbox()
t.ip_batch(['netns add r%d' % i for i in range(20)] + ['netns set r%d auto' % i for i in range(20)])
kernel = t.NsidTable()

# --- sd_notify -------------------------------------------------------------------------------
notify_path = '/run/notify.sock'
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(notify_path)
notify.settimeout(10)
conf = '/run/nsidd-test.conf'
open(conf, 'w').write('log-level = "info"\n')
sock = '/run/nsidd-notify/io.nsidd.Registry'
env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC='300000')
proc = t.track(subprocess.Popen([t.NSIDD, '--config', conf, '--socket', sock,
                                 '--metrics-listen', 'none'],
                                env=env, stderr=subprocess.PIPE, text=True))


# Like the service manager, read every notification as it comes (an unread datagram queue
# would block the sender).
notes = []


def collect():
    while True:
        try:
            notes.append(notify.recv(4096).decode())
        except OSError:
            return


notify.settimeout(None)
threading.Thread(target=collect, daemon=True).start()
cursor = 0


def expect(word, timeout=10):
    """Waits for a notification carrying `word` after the last one expected; returns those
    seen up to it."""
    global cursor
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        while cursor < len(notes):
            msg = notes[cursor]
            cursor += 1
            if any(line.startswith(word) for line in msg.split('\n')):
                return notes[:cursor]
        time.sleep(0.01)
    raise AssertionError('no %s; saw %r' % (word, notes[-20:]))


expect('READY=1')
c = t.Varlink(sock)
entries = {e['nsid'] for e in c.call('io.nsidd.Registry.List')['parameters']['entries']}
c.close()
t.check_equal(entries, kernel.table(), 'at READY=1')
seen = expect('WATCHDOG=1', timeout=2)
seen += expect('WATCHDOG=1', timeout=2)
status_seen = [m for m in seen if 'STATUS=' in m]
proc.send_signal(signal.SIGHUP)
seen = expect('RELOADING=1')
seen = expect('READY=1')
# Reload with a broken file: RELOADING=1, READY=1 again, old settings kept, error returned.
open(conf, 'w').write('log-level = "loud"\n')
r = t.nsidctl('reload', socket_path=sock, check=False)
assert r.returncode == 1 and 'InvalidConfiguration' in r.stderr and 'log-level' in r.stderr, \
    (r.returncode, r.stderr)
expect('READY=1')
open(conf, 'w').write('resync-interval = 1\n')
t.nsidctl('reload', socket_path=sock)
time.sleep(2.5)
st = t.Varlink(sock).call('io.nsidd.Registry.GetStatus')['parameters']
assert st['resyncs'] >= 2, st  # the new interval took effect
proc.send_signal(signal.SIGTERM)
seen = expect('STOPPING=1')
assert proc.wait(10) == 0
log = proc.stderr.read()
assert 'Failed to reload' not in log or 'log-level' in log
any_status = status_seen or [m for m in seen if 'STATUS=' in m]
t.log('notify: READY, WATCHDOG, RELOADING/READY, STOPPING seen; STATUS: %r' % any_status[:1])
assert any_status, 'no STATUS= notification'

# --- socket activation -----------------------------------------------------------------------
act_path = '/run/nsidd-act.sock'
held = t.Activation(act_path)
activated = held.start


p, st = activated()
assert not os.path.exists('/run/unused.sock'), 'bound its own socket despite the passed one'
t.ip_batch(['netns add x%d' % i for i in range(10)] + ['netns set x%d auto' % i for i in range(10)])
deadline = time.monotonic() + 10
while True:
    st = t.Varlink(act_path).call('io.nsidd.Registry.GetStatus')['parameters']
    if st['events'] >= 10 or time.monotonic() > deadline:
        break
    time.sleep(0.1)
assert st['events'] >= 10, ('events not read from the passed netlink socket', st)
p.send_signal(signal.SIGTERM)
assert p.wait(10) == 0

# Down time: the test still holds the netlink socket, so the kernel queues into it.
t.ip_batch(['netns del x%d' % i for i in range(5)] + ['netns add y%d' % i for i in range(7)] +
           ['netns set y%d auto' % i for i in range(7)])
p, st = activated()
deadline = time.monotonic() + 10
c = t.Varlink(act_path)
while True:
    st = c.call('io.nsidd.Registry.GetStatus')['parameters']
    mirror = {e['nsid'] for e in c.call('io.nsidd.Registry.List')['parameters']['entries']}
    if (st['events'] >= 12 and mirror == kernel.table()) or time.monotonic() > deadline:
        break
    time.sleep(0.1)
c.close()
t.check_equal(mirror, kernel.table(), 'after a restart on the held netlink socket')
# The 5 DELs and 7 NEWs of the down time were queued in the held socket and read after restart.
assert st['events'] >= 12, ('down-time events not read', st)
p.send_signal(signal.SIGTERM)
assert p.wait(10) == 0

# --- bad configuration -----------------------------------------------------------------------
for text, key in [('bogus = 1\n', 'bogus'), ('rcvbuf = "lots"\n', 'rcvbuf'),
                  ('rcvbuf = 12\n', 'rcvbuf'), ('resync-interval = -1\n', 'resync-interval'),
                  ('scope = "galaxy"\n', 'scope'), ('history = [1, 2]\n', 'history')]:
    open(conf, 'w').write(text)
    r = subprocess.run([t.NSIDD, '--config', conf, '--socket', '/run/bad.sock'],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and key in r.stderr and conf in r.stderr, (text, r.returncode,
                                                                       r.stderr)
    assert not os.path.exists('/run/bad.sock')
r = subprocess.run([t.NSIDD, '--no-such-flag'], capture_output=True, text=True)
assert r.returncode == 2

# --- journald --------------------------------------------------------------------------------
# With JOURNAL_STREAM naming its stderr, nsidd writes structured entries to the journal socket;
# here the test owns /run/systemd/journal/socket and reads the native protocol itself.
os.makedirs('/run/systemd/journal', exist_ok=True)
journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
journal.bind('/run/systemd/journal/socket')
journal.settimeout(10)
err = open('/run/nsidd-journal.err', 'w')
st = os.fstat(err.fileno())
env = dict(os.environ, JOURNAL_STREAM='%d:%d' % (st.st_dev, st.st_ino))
jsock = '/run/nsidd-journal/io.nsidd.Registry'
proc = t.track(subprocess.Popen([t.NSIDD, '--config', '/dev/null', '--socket', jsock,
                                 '--metrics-listen', 'none'], env=env, stderr=err))


def entry():
    data = journal.recv(65536)
    fields = {}
    for line in data.split(b'\n'):
        if b'=' in line:
            k, _, v = line.partition(b'=')
            # One of each: sd-journal's own CODE_* must not come on top of nsidd's.
            assert k.decode() not in fields, ('field twice', k, data)
            fields[k.decode()] = v.decode(errors='replace')
    return fields


first = entry()
assert first.get('SYSLOG_IDENTIFIER') == 'nsidd', first
assert first.get('MESSAGE_ID') == '9ed77da3a9d849f8aa9bbc9daf4aa134', first  # started
assert first.get('PRIORITY') == '6' and 'Mirroring' in first.get('MESSAGE', ''), first
assert first.get('CODE_FILE', '').endswith('daemon.cpp') and first.get('CODE_LINE'), first
proc.send_signal(signal.SIGTERM)
last = entry()
assert last.get('MESSAGE_ID') == '5fae1031d37948bd81ecc6df6a8c4193', last  # stopped
assert proc.wait(10) == 0
assert os.path.getsize('/run/nsidd-journal.err') == 0, 'logged to stderr despite the journal'
t.log('journal entries: %s / %s' % (first['MESSAGE'], last['MESSAGE']))
t.log('ok')
