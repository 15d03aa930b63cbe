#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A socket copy whose close lingers does not hold nsidd up. A namespace is held only by TCP
sockets of a process outside it; one of them has unsent data its peer never takes and
SO_LINGER 60 s. nsidd's fd search copies it (strace holds pidfd_getfd's return for 2 s), and
the holder closes its own fd meanwhile: the search's close of the copy is then the last one, and
lingers. The search process waits in it; nsidd answers GetStatus at once throughout, gives the
search up when its time runs out (killing its process), and stops cleanly on SIGTERM. Runs in a PID namespace of its own, so
that the search copies only this test's sockets."""
import os
import subprocess
import sys
import time

import nsidtest as t

t.sandbox(pid=True)
if subprocess.run(['sh', '-c', 'command -v strace'], capture_output=True).returncode:
    t.cannot_run('strace not installed (scripts/setup.sh test installs it)')
os.makedirs('/run/nsidd-test', exist_ok=True)
t.ip_batch(['netns add L', 'netns set L auto'])
subprocess.run(['ip', '-n', 'L', 'link', 'set', 'lo', 'up'], check=True)

# Inside L: a listener, a client connected to it and the accepted end, which never reads. The
# client's send buffer is filled and it lingers 60 s. Prints the client's fd and socket inode;
# closes the client on "close".
HOLDER = r'''
import ctypes, os, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
def setns(fd):
    if libc.setns(fd, 0x40000000) != 0:
        raise OSError(ctypes.get_errno(), 'setns')
own = os.open('/proc/self/ns/net', os.O_RDONLY)
ns = os.open('/run/netns/L', os.O_RDONLY)
setns(ns)
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
listener.bind(('127.0.0.1', 0))
listener.listen(1)
client = socket.create_connection(listener.getsockname())
conn, _ = listener.accept()
setns(own)
os.close(own)
os.close(ns)
client.setblocking(False)
try:
    while True:
        client.send(b'x' * 65536)
except BlockingIOError:
    pass
client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 60))
print(client.fileno(), os.fstat(client.fileno()).st_ino, flush=True)
assert sys.stdin.readline().strip() == 'close'
os.close(client.detach())
print('closed', flush=True)
sys.stdin.read()
'''
holder = t.track(subprocess.Popen([sys.executable, '-c', HOLDER], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True))
fd, inode = map(int, holder.stdout.readline().split())
link = 'socket:[%d]' % inode
t.ip_batch(['netns del L'])  # now only the holder's sockets keep L alive

# LeakSanitizer cannot stop the world in a process strace already traces: off for this nsidd
# in sanitizer builds (ASan and UBSan stay on).
lsan_off = ('env', 'ASAN_OPTIONS=%s:detect_leaks=0' % os.environ.get('ASAN_OPTIONS', '')) \
    if t.SANITIZED else ()
d = t.Daemon('--discovery-interval', '0.2', '--orphan-grace', '1', '--id-cache', 'none',
             wrap=lsan_off + ('strace', '-f', '-qq', '--seccomp-bpf', '-o', '/dev/null',
                   '-e', 'trace=pidfd_getfd', '-e', 'inject=pidfd_getfd:delay_exit=2000000'))
# nsidd itself is strace's child.
with open('/proc/%d/task/%d/children' % (d.proc.pid, d.proc.pid)) as f:
    nsidd = int(f.read().split()[0])


def copier():
    """The process, other than the holder, that holds a copy of the client socket."""
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) in (holder.pid, os.getpid()):
            continue
        try:
            for n in os.listdir('/proc/%s/fd' % pid):
                if os.readlink('/proc/%s/fd/%s' % (pid, n)) == link:
                    return int(pid)
        except OSError:
            pass
    return None


search = t.wait_for('the search process holding a copy of the client', copier, timeout=60,
                    interval=0.01)
assert search != nsidd, 'nsidd itself copied a socket: the search is not in its own process'
holder.stdin.write('close\n')
holder.stdin.flush()
assert holder.stdout.readline().strip() == 'closed'


def lingering():
    try:
        with open('/proc/%d/stack' % search) as f:
            return 'sk_stream_wait_close' in f.read()
    except OSError:
        return False


t.wait_for('the search process lingering in its close', lingering, timeout=10, interval=0.05)
t.log('the fd search process (pid %d, nsidd is %d) waits in the lingering close of its copy'
      % (search, nsidd))
slowest = 0
for _ in range(5):
    asked = time.monotonic()
    assert 'version' in d.status()
    slowest = max(slowest, time.monotonic() - asked)
    time.sleep(0.5)
assert lingering(), 'the close stopped lingering early: the test proves nothing'
t.log('GetStatus meanwhile: 5 of 5 answered, slowest in %.1f ms' % (slowest * 1000))
assert slowest < 1.0, slowest
# The search's time (30 s) runs out before the linger (60 s): nsidd kills its process, says so
# once, and goes on.
t.wait_for('the search given up', lambda: 'Fd search given up: it overran its time' in d.log(),
           timeout=45, interval=0.2)
t.wait_for('the search process gone', lambda: not os.path.exists('/proc/%d' % search) or
           open('/proc/%d/stat' % search).read().rsplit(')', 1)[1].split()[0] == 'Z', timeout=5)
assert 'version' in d.status()
t.log('past its 30 s the search was given up, its process killed; nsidd still answers')
os.kill(nsidd, 15)
try:
    d.proc.wait(10)
except subprocess.TimeoutExpired:
    raise AssertionError('nsidd did not stop on SIGTERM while its search lingered')
assert d.proc.returncode == 0, (d.proc.returncode, d.log())
t.log('SIGTERM: nsidd exited 0')
t.log('ok')
