#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Identity: every entry names its peer (NS_GET_ID cookie, nsfs inode, /run/netns names, one
pid, holders) and says what holds it alive (active | mounted | fd-held | pinned | ...).
1. Named namespaces (mounted) and a process's unnamed one (active): cookie and inode equal
   what NS_GET_ID and fstat say; --assign-ids gives the unnamed one an id; holders named.
2. A namespace added after start is named within moments (the mount watch), with no pass due.
3. A namespace kept alive by an open fd after `ip netns del` is fd-held, the fd's process
   named; when the fd closes it is dead, in history with its cookie and former name. One kept
   by a socket created inside and passed out over a Unix socket is fd-held, kind socket. One kept
   by an open /proc/PID/net/dev after PID exited (no fd an fd search can tie to it) is pinned
   after the grace period.
   A namespace bind-mounted only in another process's mount namespace, with no process ever
   in it, is named through /proc/PID/root/PATH.
4. The kernel reuses an nsfs inode for a new namespace: the new entry has the new cookie, the
   history keeps the old one."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import nsidtest as t

t.sandbox()
kernel = t.NsidTable()


entries, history = t.entries, t.deaths


def counted(d, state, n):
    """nsidd_peers{state} is n and agrees with List (--assign-ids gives an id to any namespace
    on the host that a process of another sandbox holds: those count too)."""
    listed = sum(1 for e in entries(d).values() if e['state'] == state.replace('-', '_'))
    return listed >= n and peers_metric(d, state) == listed


def peers_metric(d, state):
    return t.metric(d, 'nsidd_peers{state="%s"}' % state)


def named(d, name, state='mounted'):
    """The entry for /run/netns/NAME once nsidd shows it with its identity, else None."""
    nsid = kernel.by_name().get(name)
    e = entries(d).get(nsid) if nsid is not None else None
    if e is None or e['peer']['names'] != [name] or e['state'] != state:
        return None
    return e


# 1. At start: red (id 5), green (auto), blue (no id), and a process's unnamed namespace.
t.ip_batch(['netns add red', 'netns set red 5', 'netns add green', 'netns set green auto',
            'netns add blue'])
sleeper = t.in_new_netns('the unshared process')
d = t.Daemon('--discovery-interval', '0.2', '--orphan-grace', '1', '--assign-ids', wrap=tuple(os.environ.get('WRAP', '').split()))
for name in ('red', 'green', 'blue'):
    e = t.wait_for(name + ' mounted', lambda: named(d, name))
    cookie, inode = t.identity('/run/netns/' + name)
    assert e['peer']['cookie'] == cookie and e['peer']['inode'] == inode, (name, e, cookie)
    t.log('%s: nsid %d, cookie %d, inode %d, mounted' % (name, e['nsid'], cookie, inode))
assert named(d, 'red')['nsid'] == 5
sleeper_ns = '/proc/%d/ns/net' % sleeper.pid


def sleeper_entry():
    nsid = kernel.by_path([sleeper_ns])[sleeper_ns]
    e = entries(d).get(nsid) if nsid is not None else None
    return e if e and e['state'] == 'active' and e['peer']['pid'] is not None else None


e = t.wait_for('the process namespace, given an id', sleeper_entry)
cookie, inode = t.identity(sleeper_ns)
assert e['peer']['cookie'] == cookie and e['peer']['inode'] == inode and e['peer']['names'] == []
# The pid is one process inside it: the sleeper (or unshare before its exec), not ours.
assert os.stat('/proc/%d/ns/net' % e['peer']['pid']).st_ino == inode, e
t.log('unnamed namespace of pid %d: nsid %d (assigned), cookie %d' % (sleeper.pid, e['nsid'],
                                                                       cookie))
# Holders: the sleeper's namespace holds processes (one named), a named one its mount.
assert e['peer']['holders']['processes'] >= 1 and e['peer']['holders']['mounts'] == [], e
assert e['peer']['holders']['pid'] == e['peer']['pid'], e
assert e['peer']['holders']['comm'] in ('sleep', 'unshare'), e
red = named(d, 'red')
assert red['peer']['holders'] == {'processes': 0, 'pid': None, 'comm': None, 'fds': [],
                                  'mounts': ['/run/netns/red'], 'also_in': 0, 'copies': []}, red
# A bind mount outside /run/netns holds too, and is named; the name stays the /run/netns one.
elsewhere = tempfile.mkdtemp()
os.close(os.open(elsewhere + '/red copy', os.O_CREAT | os.O_WRONLY))
subprocess.run(['mount', '--bind', '/run/netns/red', elsewhere + '/red copy'], check=True)
t.wait_for('the second mount of red', lambda: (named(d, 'red') or {}).get('peer', {}).get(
    'holders', {}).get('mounts') == sorted(['/run/netns/red', elsewhere + '/red copy']))
subprocess.run(['umount', elsewhere + '/red copy'], check=True)
t.wait_for('back to one mount of red', lambda: (named(d, 'red') or {}).get('peer', {}).get(
    'holders', {}).get('mounts') == ['/run/netns/red'])
t.log('holders: pid %d (%s) of %d processes; red held by its mount, then by two'
      % (e['peer']['holders']['pid'], e['peer']['holders']['comm'],
         e['peer']['holders']['processes']))
status = d.status()
assert status['kernel']['ns_get_id'] is True, status
# The mount table by listmount(2) on this kernel; by its text where the run asks for that.
want_listmount = os.environ.get('NSIDD_MOUNT_TABLE') != 'mountinfo'
assert status['kernel']['listmount'] is want_listmount, status
t.log('mount table read %s' % ('with listmount(2)' if want_listmount else 'as mountinfo text'))

# 2. Added later: named through the mount watch, long before the next pass would run.
d2 = t.Daemon('--discovery-interval', '3600', socket_path='/run/nsidd-test/second')
t.wait_for('the first pass of the second daemon', lambda: named(d2, 'red'))
subprocess.run(['ip', 'netns', 'add', 'late'], check=True)  # the first nsidd gives it an id
started = time.monotonic()
t.wait_for('late named', lambda: named(d2, 'late'), timeout=5, interval=0.02)
t.log('a namespace added after start was named in %.0f ms (no /proc pass due for an hour)'
      % ((time.monotonic() - started) * 1000))
d2.stop()

# 3. Fd-held: kept alive by an fd after `ip netns del`. From here on the ids come from
# --assign-ids (setting one by hand would race nsidd's assignment).
subprocess.run(['ip', 'netns', 'add', 'held'], check=True)
e = t.wait_for('held mounted', lambda: named(d, 'held'))
seen = time.monotonic()  # nsidd's first-seen time is before this
held_cookie, held = e['peer']['cookie'], e['nsid']
fd = os.open('/run/netns/held', os.O_RDONLY)
subprocess.run(['ip', 'netns', 'del', 'held'], check=True)
assert held in kernel.by_nsid([held]), 'the fd keeps the namespace and its id'
unheld = time.monotonic()
e = t.wait_for('held fd-held', lambda: (entries(d).get(held) or {}).get('state') == 'fd_held'
               and entries(d)[held], timeout=20)
took = time.monotonic() - unheld
assert e['peer']['cookie'] == held_cookie, e
# The holder is this process: its pid, its command, the fd number.
assert {'pid': os.getpid(), 'fd': fd, 'kind': 'ns'}.items() <= e['peer']['holders']['fds'][0].items(), e
assert e['peer']['holders']['fds'][0]['comm'].startswith('python'), e
assert e['peer']['names'] == [] and e['peer']['former_names'] == ['held'], e
assert e['peer']['holders']['processes'] == 0 and e['peer']['holders']['mounts'] == [], e
t.wait_for('the fd-held peer counted', lambda: counted(d, 'fd-held', 1))
t.log('held by an fd only: fd-held after %.1f s, holder pid %d fd %d; nsidd_peers{fd-held} = 1'
      % (took, os.getpid(), fd))
t.wait_for('the leak in the log', lambda: 'Peer namespace nsid %d (was held, cookie %d'
           % (held, held_cookie) in d.log() and 'fd %d' % fd in d.log())
# nsidctl: leaks names the holder; list filters by state; status counts by state.
leaks = json.loads(t.nsidctl('-j', 'leaks', socket_path=d.socket).stdout)
# (Rows only: namespaces without an id elsewhere on this machine may leak too.)
rows = [x for x in leaks if x.get('nsid') is not None]
assert [x['nsid'] for x in rows] == [held] and rows[0]['state'] == 'fd-held', leaks
assert 'pid %d' % os.getpid() in leaks[0]['action'], leaks
human = t.nsidctl('leaks', socket_path=d.socket).stdout
assert 'fd-held' in human and 'fd %d' % fd in human, human
assert all(len(line) <= 80 for line in human.splitlines() if not line.startswith('nsid ')), human
by_state = json.loads(t.nsidctl('-j', 'list', '--state', 'fd-held', socket_path=d.socket).stdout)
assert [x['nsid'] for x in by_state] == [held], by_state
by_name = json.loads(t.nsidctl('-j', 'list', '--name', 'r?d', socket_path=d.socket).stdout)
assert [x['name'] for x in by_name] == ['red'], by_name
assert 'fd-held 1' in t.nsidctl('status', socket_path=d.socket).stdout
closed = time.monotonic()  # and its death after this
os.close(fd)
t.wait_for('held dead', lambda: held not in entries(d))
deaths = [x for x in history(d) if x['peer']['cookie'] == held_cookie]
assert len(deaths) == 1 and deaths[0]['nsid'] == held, deaths
# `ip netns del` took its name long before it died: a former name, not a current one.
assert deaths[0]['peer']['names'] == [] and deaths[0]['peer']['former_names'] == ['held'], deaths
assert deaths[0]['lifetime_usec'] >= (closed - seen) * 1e6, (deaths, closed - seen)
t.wait_for('no fd-held peer left', lambda: peers_metric(d, 'fd-held') == 0)
t.log('fd closed: dead, in history once with cookie %d, lifetime %.1f s'
      % (held_cookie, deaths[0]['lifetime_usec'] / 1e6))

# 3a. A socket created inside and passed out over a Unix socket, its namespace then deleted and
# its process gone: held by that socket (fd-held, kind socket, this process named).
subprocess.run(['ip', 'netns', 'add', 'sock'], check=True)
sock_nsid = t.wait_for_value('sock given an id (--assign-ids)',
                             lambda: kernel.by_name().get('sock'))
sock_cookie, _ = t.identity('/run/netns/sock')
t.wait_for('sock mounted', lambda: named(d, 'sock'))
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind('/run/pass-socket')
listener.listen(1)
sender = subprocess.Popen(['ip', 'netns', 'exec', 'sock', sys.executable, '-c', """
import socket
inside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect('/run/pass-socket')
socket.send_fds(c, [b'x'], [inside.fileno()])
"""])
conn, _ = listener.accept()
_, fds, _, _ = socket.recv_fds(conn, 1, 1)
sender.wait()
conn.close()
listener.close()
passed = fds[0]
subprocess.run(['ip', 'netns', 'del', 'sock'], check=True)
e = t.wait_for('sock fd-held by its socket',
               lambda: (entries(d).get(sock_nsid) or {}).get('state') == 'fd_held'
               and entries(d)[sock_nsid], timeout=20)
assert e['peer']['cookie'] == sock_cookie, e
assert {'pid': os.getpid(), 'fd': passed, 'kind': 'socket'}.items() <= \
    e['peer']['holders']['fds'][0].items(), e
human = t.nsidctl('leaks', socket_path=d.socket).stdout
assert 'socket fd %d' % passed in human, human
os.close(passed)
t.wait_for('sock dead', lambda: sock_nsid not in entries(d))
t.log('a socket created inside and passed out: fd-held, kind socket, pid %d fd %d; dead when '
      'closed' % (os.getpid(), passed))

# 3b'. A process's namespace kept by this process through /proc/PID/ns/net after PID exits:
# fd-held, this process named (its fd reads back as net:[INODE]).
gone = t.in_new_netns('gone unshared')
gone_ns = '/proc/%d/ns/net' % gone.pid
gone_nsid = t.wait_for_value('gone given an id', lambda: kernel.by_path([gone_ns])[gone_ns])
gone_fd = os.open(gone_ns, os.O_RDONLY)
gone.kill()
gone.wait()
e = t.wait_for('gone fd-held', lambda: (entries(d).get(gone_nsid) or {}).get('state') ==
               'fd_held' and entries(d)[gone_nsid], timeout=20)
assert {'pid': os.getpid(), 'fd': gone_fd, 'kind': 'ns'}.items() <= \
    e['peer']['holders']['fds'][0].items(), e
assert e['peer']['holders']['fds'][0]['comm'].startswith('python'), e
os.close(gone_fd)
t.wait_for('gone dead', lambda: gone_nsid not in entries(d))
t.log('/proc/PID/ns/net kept open after PID exited: fd-held, pid %d (%s) fd %d; dead when '
      'closed' % (os.getpid(), e['peer']['holders']['fds'][0]['comm'], gone_fd))

# 3c'. A namespace bind-mounted inside another process's private mount namespace: the mount is
# listed, named through /proc/PID/root; once its own process is gone, it holds the namespace.
inner = t.in_new_netns('inner unshared')
inner_ns = '/proc/%d/ns/net' % inner.pid
inner_cookie, _ = t.identity(inner_ns)
inner_nsid = t.wait_for_value('inner given an id', lambda: kernel.by_path([inner_ns])[inner_ns])
open('/run/hold-inner', 'w').close()
keeper = t.track(subprocess.Popen(
    ['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
     'mount --bind %s /run/hold-inner && exec sleep 600' % inner_ns]))
t.wait_for('the private mount', lambda: os.stat('/proc/%d/root/run/hold-inner' % keeper.pid)
           .st_ino != os.stat('/run/hold-inner').st_ino)
held_at = '/proc/%d/root/run/hold-inner' % keeper.pid
# Listed while its own process still holds it too (the pass reads each mount namespace it
# meets).
e = t.wait_for('inner active, its mount elsewhere listed', lambda: (
    entries(d).get(inner_nsid) or {}).get('peer', {}).get('holders', {}).get('mounts') ==
    [held_at] and entries(d)[inner_nsid], timeout=20)
assert e['state'] == 'active' and e['peer']['holders']['processes'] >= 1, e
inner.kill()
inner.wait()
e = t.wait_for('inner held by the private mount', lambda: (
    entries(d).get(inner_nsid) or {}).get('state') == 'mounted' and entries(d)[inner_nsid],
    timeout=20)
assert e['peer']['holders']['mounts'] == [held_at], e
assert e['state'] == 'mounted' and e['peer']['cookie'] == inner_cookie, e
assert e['peer']['holders']['processes'] == 0, e
time.sleep(1.5)  # past the grace: still held by that mount, never pinned
assert entries(d)[inner_nsid]['state'] == 'mounted', entries(d)[inner_nsid]
keeper.kill()
keeper.wait()
t.wait_for('inner dead', lambda: inner_nsid not in entries(d))
t.log('bind-mounted in a private mount namespace: listed beside its process, then mounted, '
      'held by %s; dead with it' % held_at)

# 3c''. A namespace no process was ever seen in, bind-mounted only in another mount namespace
# (as a runtime in its own mount namespace mounts a CNI namespace): named through that mount.
open('/run/only-inside', 'w').close()
runtime = t.track(subprocess.Popen(
    ['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
     'unshare --net=/run/only-inside true && exec sleep 600']))
only_at = '/proc/%d/root/run/only-inside' % runtime.pid
t.wait_for('the mount inside', lambda: os.stat(only_at).st_ino != os.stat('/run/only-inside')
           .st_ino)
only_cookie, only_inode = t.identity(only_at)
only_nsid = t.wait_for_value('given an id through that mount',
                             lambda: kernel.by_path([only_at])[only_at])
e = t.wait_for('named through the mount elsewhere', lambda: (
    entries(d).get(only_nsid) or {}).get('peer', {}).get('cookie') == only_cookie
    and entries(d)[only_nsid], timeout=20)
assert e['state'] == 'mounted', e
assert e['peer']['inode'] == only_inode and e['peer']['holders']['mounts'] == [only_at], e
assert e['peer']['holders']['processes'] == 0 and e['peer']['names'] == [], e
runtime.kill()
runtime.wait()
t.wait_for('dead with its mount namespace', lambda: only_nsid not in entries(d))
assert any(x['peer']['cookie'] == only_cookie and x['state'] == 'mounted' for x in history(d)), \
    history(d)
os.unlink('/run/only-inside')
t.log('mounted only in another mount namespace: named through %s; dead with it' % only_at)

# 3b. Pinned: /proc/PID/net/dev of a process in its own namespace, kept open after it exits.
# Nothing an fd search can tie to the namespace holds it (the fd is a proc file, not nsfs).
pinner = t.in_new_netns('the pinner unshared')
pin_path = '/proc/%d/ns/net' % pinner.pid
pin_cookie, _ = t.identity(pin_path)
pin_nsid = t.wait_for_value('the pinner given an id', lambda: kernel.by_path([pin_path])[pin_path])
dev = open('/proc/%d/net/dev' % pinner.pid)
pinner.kill()
pinner.wait()
unheld = time.monotonic()
try:
    e = t.wait_for('pinned', lambda: (entries(d).get(pin_nsid) or {}).get('state') == 'pinned'
                   and entries(d)[pin_nsid], timeout=20)
except AssertionError:
    raise AssertionError('not pinned: %s' % entries(d).get(pin_nsid))
took = time.monotonic() - unheld
assert took >= 1.0, 'pinned before the 1 s grace period: %.2f s' % took
assert e['peer']['cookie'] == pin_cookie and e['peer']['holders']['fds'] == [], e
t.wait_for('the pinned peer counted', lambda: counted(d, 'pinned', 1))
dev.close()
t.wait_for('pinned dead', lambda: pin_nsid not in entries(d))
pinned_death = [x for x in history(d) if x['peer']['cookie'] == pin_cookie]
assert len(pinned_death) == 1 and pinned_death[0]['state'] == 'pinned', pinned_death
t.wait_for('no pinned peer left', lambda: peers_metric(d, 'pinned') == 0)
t.log('kept by an open /proc/PID/net/dev: pinned after %.1f s (grace 1 s); dead once closed'
      % took)

# 3c. Stale mount: a CNI-style mount whose pod process was killed is stale after the grace;
# one that is not on a stale-mount path stays mounted.
cni = 'cni-1a2b3c4d-5e6f-7a8b-9c0d-0123456789ab'
subprocess.run(['ip', 'netns', 'add', cni], check=True)
pod = t.track(subprocess.Popen(['ip', 'netns', 'exec', cni, 'sleep', '600']))
e = t.wait_for('the pod active', lambda: named(d, cni, 'active'))
pod.kill()
pod.wait()
killed = time.monotonic()
e = t.wait_for('stale', lambda: named(d, cni, 'stale_mount'), timeout=20)
took = time.monotonic() - killed
assert took >= 1.0, 'stale before the grace period: %.2f s' % took
assert e['peer']['holders']['mounts'] == ['/run/netns/' + cni], e
leaks = json.loads(t.nsidctl('-j', 'leaks', socket_path=d.socket).stdout)
stale = [x for x in leaks if x['nsid'] == e['nsid']]
assert stale and stale[0]['state'] == 'stale-mount' and \
    stale[0]['command'] == 'ip netns del ' + cni and stale[0]['command'] in stale[0]['action'], \
    leaks
assert named(d, 'red')['state'] == 'mounted'
t.wait_for('the stale mount counted', lambda: counted(d, 'stale-mount', 1))
subprocess.run(['sh', '-c', stale[0]['command']], check=True)  # as nsidctl leaks prints it
t.wait_for('no stale mount left', lambda: peers_metric(d, 'stale-mount') == 0)
t.log('a CNI-style mount outliving its process: stale-mount after %.1f s; nsidctl leaks says '
      '`%s`, which frees it' % (took, stale[0]['command']))

# 3d. A dangling name: a file under /run/netns with no mount on it (what a crash between
# `umount` and `rm` leaves); `ip netns` lists it, nothing is in it.
open('/run/netns/ghost', 'w').close()
t.wait_for('the dangling name', lambda: d.status()['dangling_names'] == ['ghost'])
t.wait_for('the dangling name counted', lambda: t.metric(d, 'nsidd_dangling_names') == 1)
leaks = json.loads(t.nsidctl('-j', 'leaks', socket_path=d.socket).stdout)
ghost = [x for x in leaks if x.get('dangling-name') == 'ghost']
assert len(ghost) == 1 and ghost[0]['state'] == 'dangling' and \
    ghost[0]['command'] == 'rm /run/netns/ghost' and ghost[0]['path'] == '/run/netns/ghost', leaks
table = t.nsidctl('leaks', socket_path=d.socket).stdout
assert any(line.split()[:3] == ['-', 'dangling', '/run/netns/ghost'] for line in
           table.splitlines()), table
subprocess.run(['sh', '-c', ghost[0]['command']], check=True)  # as printed
t.wait_for('no dangling name', lambda: d.status()['dangling_names'] == [])
t.log('a name with no mount under /run/netns: dangling, counted, in nsidctl leaks')

# 3f. Names with spaces, newlines, backslashes, tabs and non-ASCII: List has them exactly (the
# mountinfo text escapes them; listmount does not), nsidctl escapes them for the terminal and
# keeps its columns aligned.
odd = ['sp ace', 'new\nline', 'back\\slash', 'tab\there', 'uni\u00e9']
for n in odd:
    subprocess.run(['ip', 'netns', 'add', n], check=True)
t.wait_for('the odd names', lambda: all(named(d, n) for n in odd))
table = [line for line in t.nsidctl('list', socket_path=d.socket).stdout.splitlines() if line]
rows = [row for row in table[1:-1] if ' mounted ' in row]
for shown in ('sp\\x20ace', 'new\\nline', 'back\\\\slash', 'tab\\there', 'uni\u00e9'):
    assert sum(1 for row in rows if ' %s ' % shown in row) == 1, (shown, table)
assert len({row.index(' mounted ') for row in rows}) == 1, table  # one STATE column
for n in odd:
    subprocess.run(['ip', 'netns', 'del', n], check=True)
t.log('odd names listed exactly and shown escaped in aligned columns: %s' % odd)

# 4. Inode reuse: delete namespaces and create others until the kernel hands a new one an nsfs
# inode an old one had (inodes come from one system-wide pool, lowest free first, shared with
# /proc entries: a batch of 20 makes a reuse all but certain); the entries and the history
# must follow the cookie, not the inode.
reused = None
batch = ['re%d' % i for i in range(20)]


def make_batch():
    t.ip_batch(['netns add %s' % n for n in batch])  # ids: nsidd's --assign-ids
    t.wait_for('the batch named', lambda: all(named(d, n) for n in batch))
    return {t.identity('/run/netns/' + n)[1]: (t.identity('/run/netns/' + n)[0], n)
            for n in batch}


def kill_batch(made):
    t.ip_batch(['netns del %s' % n for n in batch])
    cookies = {c for c, _ in made.values()}
    t.wait_for('the batch dead', lambda: cookies <= {x['peer']['cookie'] for x in history(d)})


for attempt in range(10):
    old = make_batch()
    kill_batch(old)
    time.sleep(0.2 * (attempt % 3))  # the inode is freed a little after the DEL
    new = make_batch()
    common = sorted(set(old) & set(new))
    if common:
        inode = common[0]
        reused = (inode, old[inode][0], new[inode][0], attempt + 1)
        e = named(d, new[inode][1])
        assert e['peer']['cookie'] == reused[2] and e['peer']['inode'] == inode, e
        break
    kill_batch(new)
assert reused, 'the kernel never reused an nsfs inode in 10 batches of 20'
dead = [x for x in history(d) if x['peer']['cookie'] == reused[1]]
assert len(dead) == 1 and dead[0]['peer']['inode'] == reused[0], dead
t.log('inode %d reused (try %d): the old namespace (cookie %d) is dead in history, the new '
      'one has cookie %d' % (reused[0], reused[3], reused[1], reused[2]))

# 5. History across a restart (the id cache): a peer's age and lifetime count from when nsidd
# first saw it, not from the restart; a namespace that died while nsidd was down is recorded
# as such, with the window; a death seen keeps the state it had.
before = {e['peer']['cookie']: e for e in entries(d).values()}
red_before = named(d, 'red')
green_before = named(d, 'green')
stopped = time.time()
d.stop()
subprocess.run(['ip', 'netns', 'del', 'green'], check=True)  # while nsidd is down
time.sleep(1.1)
d = t.Daemon('--discovery-interval', '0.2', '--orphan-grace', '1', '--assign-ids')
started = time.time()
red = t.wait_for('red named again', lambda: named(d, 'red'))
assert red['since'] == red_before['since'], (red, red_before)
down = t.wait_for('green dead while down', lambda: [
    x for x in history(d) if x['peer']['cookie'] == green_before['peer']['cookie']])
assert len(down) == 1 and down[0]['died_while_down'] is True, down
x = down[0]
assert x['nsid'] == green_before['nsid'] and x['since'] == green_before['since'], (x, green_before)
down_since = t.parse_iso8601(x['down_since'])
assert stopped - 1 <= down_since <= stopped + 1 and t.parse_iso8601(x['died']) >= down_since, x
t.log('restart: red keeps its first-seen %s; green died while nsidd was down, between %s and '
      '%s' % (red['since'], x['down_since'], x['died']))
shown = t.nsidctl('history', socket_path=d.socket).stdout
assert 'while down' in shown and 'LAST STATE' in shown, shown
subprocess.run(['ip', 'netns', 'del', 'red'], check=True)
dead = t.wait_for('red dead', lambda: [x for x in history(d)
                                       if x['peer']['cookie'] == red['peer']['cookie']])
assert dead[0]['state'] == 'mounted' and dead[0]['since'] == red_before['since'], dead
assert dead[0]['died_while_down'] is False and dead[0]['down_since'] is None, dead
assert dead[0]['lifetime_usec'] >= (time.time() - started) * 1e6, dead
t.log('red died: last state mounted, lifetime %.1f s from its first sight before the restart'
      % (dead[0]['lifetime_usec'] / 1e6))
d.stop()
t.log('ok')
