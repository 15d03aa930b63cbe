#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Holder scans that nothing another user owns can stall, and holders of namespaces nsidd never
saw born. nsidd runs as installed: uid 65534 with CAP_NET_ADMIN, CAP_NET_BROADCAST,
CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH.
1. Namespaces with an id whose creator died before nsidd started, held only by an nsfs fd or by
   a socket of a process outside them (one of those processes stopped with SIGSTOP): fd-held,
   never pinned, identity (cookie, inode) known, the holder named with pid, comm, fd and kind.
2. The same for namespaces made and orphaned while nsidd runs.
3. An unprivileged user's file on a FUSE mount whose server never answers FLUSH (a close of it
   is shown to hang first), held while fd searches run: GetStatus is answered every second for
   20 s, quickly, and SIGTERM stops nsidd cleanly; the same for an nsidd without
   CAP_DAC_READ_SEARCH, which tells fds apart by fdinfo."""
import atexit
import json
import os
import signal
import subprocess
import sys
import time

import nsidtest as t

t.sandbox()
if not os.path.exists('/usr/bin/python3') or subprocess.run(
        ['/usr/bin/python3', '-c', 'import fuse'], capture_output=True).returncode:
    t.cannot_run('python3-fuse not installed for /usr/bin/python3 (scripts/setup.sh test)')
if not os.path.exists('/dev/fuse'):
    t.cannot_run('/dev/fuse missing: no FUSE here')
os.makedirs('/run/nsidd-test', exist_ok=True)
os.chmod('/run/nsidd-test', 0o777)

# Keeps an nsfs fd of the namespace at argv[2] ("ns"), or only a socket made inside it
# ("socket"); prints the fd; holds it until stdin closes.
HOLDER = r'''
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def setns(fd):
    if libc.setns(fd, 0x40000000) != 0:
        raise OSError(ctypes.get_errno(), 'setns')
ns = os.open(sys.argv[2], os.O_RDONLY)
if sys.argv[1] == 'socket':
    own = os.open('/proc/self/ns/net', os.O_RDONLY)
    setns(ns)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    setns(own)
    os.close(own)
    os.close(ns)
    fd = s.fileno()
else:
    fd = ns
print(fd, flush=True)
sys.stdin.read()
'''

# A FUSE file system with one file, whose FLUSH (sent at every close) is never answered.
STUCK_FUSE = r'''
import errno, stat, sys, time
import fuse
fuse.fuse_python_api = (0, 2)
class Stat(fuse.Stat):
    def __init__(self, mode, nlink, size):
        self.st_mode, self.st_nlink, self.st_size = mode, nlink, size
        self.st_ino = self.st_dev = self.st_uid = self.st_gid = 0
        self.st_atime = self.st_mtime = self.st_ctime = 0
class Stuck(fuse.Fuse):
    def getattr(self, path):
        if path == '/':
            return Stat(stat.S_IFDIR | 0o755, 2, 0)
        if path == '/file':
            return Stat(stat.S_IFREG | 0o666, 1, 5)
        return -errno.ENOENT
    def readdir(self, path, offset):
        for name in ('.', '..', 'file'):
            yield fuse.Direntry(name)
    def open(self, path, flags):
        return 0
    def read(self, path, size, offset):
        return b'stuck'[offset:offset + size]
    def flush(self, path, *args):
        time.sleep(3600)
        return 0
    def release(self, path, *args):
        return 0
sys.argv = ['stuck', sys.argv[1], '-f', '-o', 'allow_other']
server = Stuck()
server.multithreaded = True
server.parse(errex=1)
server.main()
'''


def comm(pid):
    with open('/proc/%d/comm' % pid) as f:
        return f.read().strip()


def orphan(name, kind):
    """A namespace with an id whose creator is dead, held only by an nsfs fd ("ns") or a socket
    ("socket") of a process outside it."""
    child = t.track(subprocess.Popen(['unshare', '--net', 'sleep', '600']))
    own = os.readlink('/proc/self/ns/net')
    t.wait_for('the child in its namespace',
               lambda: os.readlink('/proc/%d/ns/net' % child.pid) != own, interval=0.01)
    path = '/proc/%d/ns/net' % child.pid
    cookie, inode = t.identity(path)
    t.ip_batch(['netns attach %s %d' % (name, child.pid), 'netns set %s auto' % name])
    nsid = t.NsidTable().by_name()[name]
    holder = t.track(subprocess.Popen([sys.executable, '-c', HOLDER, kind, path],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    fd = int(holder.stdout.readline())
    t.ip_batch(['netns del ' + name])
    child.kill()
    child.wait()
    return {'name': name, 'nsid': nsid, 'holder': holder, 'fd': fd, 'cookie': cookie,
            'inode': inode, 'kind': kind, 'comm': comm(holder.pid)}


seen = {}  # nsid -> states seen


def judged(d, orphans):
    """True once every orphan reads fd-held with its identity and holder; records states."""
    e = t.entries(d)
    ok = True
    for o in orphans:
        row = e.get(o['nsid'])
        if row is None:
            ok = False
            continue
        seen.setdefault(o['nsid'], set()).add(row['state'])
        want = [{'pid': o['holder'].pid, 'comm': o['comm'], 'fd': o['fd'], 'kind': o['kind']}]
        ok &= (row['state'] == 'fd_held' and row['peer']['cookie'] == o['cookie'] and
               row['peer']['inode'] == o['inode'] and row['peer']['holders']['fds'] == want)
    return ok


def wait_judged(d, orphans, what):
    try:
        t.wait_for(what, lambda: judged(d, orphans), timeout=20, interval=0.05)
    except AssertionError:
        raise AssertionError('%s: %s' % (what, {o['nsid']: t.entries(d).get(o['nsid'])
                                                 for o in orphans}))
    for o in orphans:
        assert 'pinned' not in seen[o['nsid']], (o, seen[o['nsid']])


# 1. Before nsidd starts: two orphans held by an nsfs fd, two by a socket; one holder stopped.
before = [orphan('pre-ns', 'ns'), orphan('pre-sk', 'socket'), orphan('pre-ns2', 'ns'),
          orphan('pre-sk2', 'socket')]
os.kill(before[2]['holder'].pid, signal.SIGSTOP)
caps = '+net_admin,+net_broadcast,+sys_ptrace,+dac_read_search'
d = t.Daemon('--discovery-interval', '0.2', '--orphan-grace', '1', '--id-cache', 'none',
             wrap=('setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
                   '--inh-caps=' + caps, '--ambient-caps=' + caps))
wait_judged(d, before, 'orphans older than nsidd judged fd-held with identity and holder')
t.log('4 namespaces whose creators died before nsidd started (2 held by an nsfs fd, 2 by a '
      'socket, one holder stopped): fd-held, identity and holder known, never pinned')
os.kill(before[2]['holder'].pid, signal.SIGCONT)

# 2. While it runs.
during = [orphan('run-ns', 'ns'), orphan('run-sk', 'socket')]
wait_judged(d, during, 'orphans made while nsidd runs judged fd-held')
t.log('2 more, orphaned while nsidd runs: the same')
# Its holder gone, the namespace dies: history keeps its last state, spelled as list spells it
# (and -j=pretty is --json=pretty).
gone = during[1]
gone['holder'].kill()
gone['holder'].wait()
t.wait_for('its death', lambda: any(x['nsid'] == gone['nsid'] for x in t.deaths(d)))
hist = json.loads(t.nsidctl('-j=pretty', 'history', socket_path=d.socket).stdout)
died = [x for x in hist if x['nsid'] == gone['nsid']]
assert died and died[-1]['state'] == 'fd-held', died
t.log('its holder killed, it died: nsidctl -j=pretty history says fd-held')

# 3. A FUSE file whose FLUSH never returns, held by an unprivileged user.
os.makedirs('/run/fuse-stuck', exist_ok=True)
server = t.track(subprocess.Popen(['/usr/bin/python3', '-c', STUCK_FUSE, '/run/fuse-stuck']))
# Should this test fail, the server goes first (atexit runs this before nsidtest's cleanup): a
# process caught in a close on it ends only then.
atexit.register(server.kill)
t.wait_for('the FUSE mount', lambda: os.path.exists('/run/fuse-stuck/file'))
closer = t.track(subprocess.Popen(['cat', '/run/fuse-stuck/file'], stdout=subprocess.DEVNULL))
time.sleep(1.5)
assert closer.poll() is None, 'the FUSE server answered FLUSH: the test proves nothing'
with open('/proc/%d/stack' % closer.pid) as f:
    stack = f.read()
assert 'fuse_flush' in stack, 'cat is not waiting on FLUSH in its close: %s' % stack
fuse_holder = t.track(subprocess.Popen(
    ['setpriv', '--reuid=1234', '--regid=1234', '--clear-groups', sys.executable, '-c',
     'import sys; f = open("/run/fuse-stuck/file"); print("open", flush=True); sys.stdin.read()'],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
assert fuse_holder.stdout.readline().strip() == 'open'
t.log('a close of the FUSE file hangs (cat waits in fuse_flush); uid 1234 holds it open')
# A second nsidd without CAP_DAC_READ_SEARCH tells fds apart by fdinfo instead of their links.
nodac = '+net_admin,+net_broadcast,+sys_ptrace'
d2 = t.Daemon('--discovery-interval', '0.2', '--orphan-grace', '1', '--id-cache', 'none',
              socket_path='/run/nsidd-test/nodac.sock',
              wrap=('setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
                    '--inh-caps=' + nodac, '--ambient-caps=' + nodac))
latencies = {d.socket: [], d2.socket: []}
made = []
started = time.monotonic()
for second in range(20):
    if second % 4 == 0:  # a new holder set: a new search meanwhile
        made.append(orphan('fuse-%d' % second, 'socket' if second % 8 else 'ns'))
    for path, got in latencies.items():
        c = t.Varlink(path, timeout=5)
        asked = time.monotonic()
        r = c.call('io.nsidd.Registry.GetStatus')
        got.append(time.monotonic() - asked)
        c.close()
        assert r and 'parameters' in r, (path, r)
    time.sleep(max(0, started + second + 1 - time.monotonic()))
wait_judged(d, made, 'orphans made while the FUSE file was held judged fd-held')
# Without the fd links, a namespace held only by another user's nsfs fd is found by inode but
# cannot be opened to be identified; one held by a socket is identified through the socket.
wait_judged(d2, [o for o in made if o['kind'] == 'socket'],
            'socket-held orphans judged fd-held without CAP_DAC_READ_SEARCH')
for path, got in latencies.items():
    t.log('%s: 20 s with the FUSE file held and %d searches due: GetStatus answered 20 of 20, '
          'slowest in %.1f ms' % (path, len(made), max(got) * 1000))
    assert max(got) < 1.0, got
d.stop()
d2.stop()
t.log('SIGTERM: both stopped cleanly (exit 0)')
# The FUSE server goes first: the closes waiting on it then return.
server.kill()
server.wait()
for p in (closer, fuse_holder):
    p.kill()
    p.wait()
t.log('ok')
