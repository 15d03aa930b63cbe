#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The socket and the id cache are nsidd's alone: a second nsidd does not steal a served socket,
no file that is not a socket is ever replaced, a stale socket is, a clean stop removes nsidd's
own socket file, and the id cache is written 0600 and never through a symlink."""
import os
import socket
import stat
import subprocess

import nsidtest as t

t.sandbox()
os.makedirs('/run/nsidd-test', exist_ok=True)
path = '/run/nsidd-test/io.nsidd.Registry'


def second(*args):
    return subprocess.run([t.NSIDD, '--config', '/dev/null', '--metrics-listen', 'none',
                           '--id-cache', 'none'] + list(args),
                          capture_output=True, text=True, timeout=30)


# A served socket is not taken over.
d = t.Daemon('--id-cache', 'none')
r = second('--socket', path)
assert r.returncode == 1, (r.returncode, r.stderr)
assert 'another nsidd serves it' in r.stderr, r.stderr
assert 'version' in d.status(), 'the first nsidd is still reachable'
t.log('a second nsidd on a served socket: exit 1, "%s"' % r.stderr.strip().splitlines()[-1])

# A clean stop removes its own socket file.
d.stop()
assert d.proc.returncode == 0
assert not os.path.exists(path), 'socket file left after a clean stop'
t.log('clean stop: socket file removed')

# Something that is not a socket is never replaced.
with open(path, 'w') as f:
    f.write('precious\n')
r = second('--socket', path)
assert r.returncode == 1, (r.returncode, r.stderr)
assert 'not a socket' in r.stderr, r.stderr
assert open(path).read() == 'precious\n', 'a regular file was replaced'
os.unlink(path)
os.symlink('/etc/hostname', path)
r = second('--socket', path)
assert r.returncode == 1 and os.path.islink(path), r.stderr
os.unlink(path)
t.log('a regular file and a symlink at --socket: left alone, exit 1')

# A stale socket (nobody listening) is replaced.
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.close()
d = t.Daemon('--id-cache', '/run/nsidd-test/ids')
t.log('a stale socket file: replaced')

# The id cache: mode 0600, and a symlink planted at its temporary name is not followed.
t.ip_batch(['netns add a', 'netns set a auto'])
target = '/run/nsidd-test/target'
with open(target, 'w') as f:
    f.write('untouched\n')
os.symlink(target, '/run/nsidd-test/ids.tmp')
d.stop()
assert open(target).read() == 'untouched\n', 'the id cache was written through a symlink'
st = os.lstat('/run/nsidd-test/ids')
assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
assert open('/run/nsidd-test/ids').readline().startswith('nsidd-ids 3 ')
t.log('id cache: 0600, written past a planted symlink without following it')
t.log('ok')
