#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Datagrams sent to nsidd's event socket by another process change nothing, in a sandbox netns.
A privileged process (CAP_NET_ADMIN may send to any netlink port) sends forged RTM_DELNSID and
RTM_NEWNSID messages for real and unused ids, and datagrams larger than a receive slot, straight
to the event socket's port. nsidd reads only what the kernel sent: the mirror keeps every row,
records no death, takes no resync for them, and still follows the real events that come next."""
import os
import socket
import struct

import nsidtest as t

t.sandbox()
kernel = t.NsidTable()
t.ip_batch(['netns add f%d' % i for i in range(3)] + ['netns set f%d auto' % i for i in range(3)])
d = t.Daemon()
got, want = t.settle(d, kernel)
t.check_equal(got, want, 'before')
before = d.status()
ids = sorted(want)


def event_port(pid):
    """The netlink port of nsidd's RTNLGRP_NSID socket (the route socket with groups)."""
    inodes = set()
    for fd in os.listdir('/proc/%d/fd' % pid):
        try:
            link = os.readlink('/proc/%d/fd/%s' % (pid, fd))
        except OSError:
            continue
        if link.startswith('socket:['):
            inodes.add(int(link[8:-1]))
    with open('/proc/%d/net/netlink' % pid) as f:
        next(f)
        for line in f:
            cols = line.split()
            # sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
            if cols[1] == '0' and int(cols[3], 16) != 0 and int(cols[9]) in inodes:
                return int(cols[2])
    raise AssertionError('no event socket found for pid %d' % pid)


def nsid_message(kind, nsid):
    body = struct.pack('=Bxxx', 0) + struct.pack('=HHi', 8, 1, nsid)  # NETNSA_NSID
    return struct.pack('=IHHII', 16 + len(body), kind, 0, 0, 0) + body


RTM_NEWNSID, RTM_DELNSID = 88, 89
port = event_port(d.proc.pid)
forger = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
forger.bind((0, 0))
sent = 0
for nsid in ids + [ids[-1] + 1, 4000]:
    for kind in (RTM_DELNSID, RTM_NEWNSID, RTM_DELNSID):
        forger.sendto(nsid_message(kind, nsid), (port, 0))
        sent += 1
# Larger than a receive slot (a page), and than the old 32 KiB buffer.
for size in (6000, 40000):
    forger.sendto(nsid_message(RTM_DELNSID, ids[0]) + b'\0' * size, (port, 0))
    sent += 1
t.log('sent %d forged datagrams to port %d' % (sent, port))

# A real event after them: once nsidd has it, it has read the forged ones too.
t.ip_batch(['netns add f3', 'netns set f3 auto'])
got, want = t.settle(d, kernel)
t.check_equal(got, want, 'after forged datagrams and a real NEW')
after = d.status()
assert after['resyncs'] == before['resyncs'], (before['resyncs'], after['resyncs'])
assert after['overruns'] == before['overruns'], (before['overruns'], after['overruns'])
assert after['events'] == before['events'] + 1, (before['events'], after['events'])
assert not t.deaths(d), t.deaths(d)
t.log('forged datagrams: no row changed, no death, no resync; the real event counted once')

# And a real death still goes through.
t.ip_batch(['netns del f0'])
got, want = t.settle(d, kernel)
t.check_equal(got, want, 'after a real death')
assert len(t.deaths(d)) == 1, t.deaths(d)
d.stop()
t.log('PASS')
