#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""nsidd not root, with only CAP_NET_ADMIN, CAP_NET_BROADCAST and CAP_SYS_PTRACE (the unit also
grants CAP_DAC_READ_SEARCH; test_scans.py runs it so). It may not read another user's
/proc/PID/fd links, so the fd search lists /proc/PID/fdinfo, tells nsfs files and sockets by
the mount they live on, and copies only the sockets (pidfd_getfd).
A root process outside two namespaces keeps a socket created in one and an fd of the other
after both are deleted: both are fd-held, kind socket and kind ns, the process named; when it
exits both die."""
import os
import subprocess

import nsidtest as t

t.sandbox()
os.makedirs('/run/nsidd-test', exist_ok=True)
os.chmod('/run/nsidd-test', 0o777)
caps = '+net_admin,+net_broadcast,+sys_ptrace'
d = t.Daemon('--discovery-interval', '0.2', '--orphan-grace', '1', '--id-cache', 'none',
             wrap=('setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
                   '--inh-caps=' + caps, '--ambient-caps=' + caps))
assert os.stat('/proc/%d' % d.proc.pid).st_uid == 65534
for n in ('sk', 'nsfd'):
    subprocess.run(['ip', 'netns', 'add', n], check=True)
    subprocess.run(['ip', 'netns', 'set', n, 'auto'], check=True)
subprocess.run(['ip', '-n', 'sk', 'link', 'set', 'lo', 'up'], check=True)
ids = t.NsidTable().by_name()
t.wait_for('both mounted', lambda: sorted(e['state'] for e in t.entries(d).values()) ==
           ['mounted', 'mounted'])
# The nsfs fd is opened here and inherited (opened inside `ip netns exec`'s own mount namespace,
# /run/netns is not always there); the socket is made inside sk.
nsfd_fd = os.open('/run/netns/nsfd', os.O_RDONLY)
holder = t.track(subprocess.Popen(
    ['ip', 'netns', 'exec', 'sk', 'bash', '-c', 'exec 3<>/dev/udp/127.0.0.1/9; '
     'exec nsenter --net=/proc/%d/ns/net sleep 600' % os.getpid()], pass_fds=(nsfd_fd,)))
os.close(nsfd_fd)
own = os.readlink('/proc/self/ns/net')
# Outside again once it is `sleep` (before `ip netns exec` switches, it is outside too).


def holder_outside():
    with open('/proc/%d/comm' % holder.pid) as f:
        return f.read().strip() == 'sleep' and os.readlink('/proc/%d/ns/net' % holder.pid) == own


t.wait_for('the holder outside, sleeping', holder_outside)
subprocess.run(['ip', 'netns', 'del', 'sk'], check=True)
subprocess.run(['ip', 'netns', 'del', 'nsfd'], check=True)


def held():
    e = t.entries(d)
    if all(e.get(ids[n], {}).get('state') == 'fd_held' for n in ('sk', 'nsfd')):
        return e
    return None


try:
    e = t.wait_for('both fd-held', held, timeout=20)
except AssertionError:
    raise AssertionError('not fd-held: %s' % t.entries(d))
assert e[ids['sk']]['peer']['holders']['fds'] == [
    {'pid': holder.pid, 'comm': 'sleep', 'fd': 3, 'kind': 'socket'}], e[ids['sk']]
assert e[ids['nsfd']]['peer']['holders']['fds'] == [
    {'pid': holder.pid, 'comm': 'sleep', 'fd': nsfd_fd, 'kind': 'ns'}], e[ids['nsfd']]
t.log('not root (uid 65534, three capabilities): a socket and an nsfs fd of a root process '
      'found through fd copies; both fd-held, pid %d named' % holder.pid)
holder.kill()
holder.wait()
t.wait_for('both dead', lambda: not t.entries(d))
d.stop()
t.log('ok')
