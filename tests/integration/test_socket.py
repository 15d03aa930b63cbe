#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The socket and the id cache are nsidd's alone: a second nsidd does not steal a served socket,
no file that is not a socket is ever replaced, a stale socket is, a clean stop removes nsidd's
own socket file, the socket is made 0660 in group nsidd with no call on its path after bind
(a symlink swapped in right after bind is not followed), and the id cache is written 0600 and
never through a symlink."""
import atexit
import os
import signal
import socket
import stat
import subprocess
import time

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
assert open('/run/nsidd-test/ids').readline().startswith('nsidd-ids 4 ')
t.log('id cache: 0600, written past a planted symlink without following it')

# The socket's mode and group are set before bind: nothing is done to the path after it. Here a
# group nsidd exists (a copy of /etc/group in this mount namespace), bind's return is delayed by
# strace, and the socket file is swapped for a symlink to a victim file meanwhile: the victim
# keeps its group and mode.
if subprocess.run(['sh', '-c', 'command -v strace'], capture_output=True).returncode:
    t.cannot_run('strace not installed (scripts/setup.sh test installs it)')
with open('/etc/group') as f:
    groups = f.read()
with open('/run/nsidd-test/group', 'w') as f:
    f.write(groups + 'nsidd:x:4242:\n')
subprocess.run(['mount', '--bind', '/run/nsidd-test/group', '/etc/group'], check=True)
victim = '/run/nsidd-test/victim'
with open(victim, 'w') as f:
    f.write('victim\n')
os.chmod(victim, 0o600)
before = os.stat(victim)
os.unlink(path) if os.path.lexists(path) else None
slow = subprocess.Popen(['strace', '-qq', '-o', '/dev/null', '-e', 'trace=bind',
                         '-e', 'inject=bind:delay_exit=1000000', t.NSIDD, '--config', '/dev/null',
                         '--metrics-listen', 'none', '--id-cache', 'none', '--socket', path],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                        start_new_session=True)
# strace and the nsidd it runs go together, whatever happens below.
atexit.register(lambda: slow.poll() is None and os.killpg(slow.pid, signal.SIGKILL))
t.wait_for('the socket file made by bind', lambda: os.path.lexists(path), timeout=30,
           interval=0.005)
st = os.lstat(path)
assert stat.S_ISSOCK(st.st_mode), oct(st.st_mode)
assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == 4242, (oct(st.st_mode), st.st_gid)
os.rename(path, path + '.real')
os.symlink(victim, path)
time.sleep(2)  # bind returns 1 s after it made the file; nsidd goes on from there
after = os.stat(victim)
assert (after.st_gid, after.st_mode) == (before.st_gid, before.st_mode), \
    'the victim behind a symlink swapped in after bind was changed: gid %d mode %o' % (
        after.st_gid, after.st_mode)
with open('/proc/%d/task/%d/children' % (slow.pid, slow.pid)) as f:
    traced = int(f.read().split()[0])  # nsidd, strace's child
os.kill(traced, signal.SIGTERM)
slow.wait(30)
os.unlink(path)
os.unlink(path + '.real')
subprocess.run(['umount', '/etc/group'], check=True)
t.log('socket: 0660 group nsidd from before bind; a symlink swapped in after bind: not followed')
t.log('ok')
