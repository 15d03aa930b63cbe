#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Captures real kernel nsid messages into tests/data/*.hex for the codec tests.

Run as root inside a throwaway sandbox, never in the host's own netns:
    unshare --net --mount --propagation private sh -c \
        'mount -t tmpfs tmpfs /run && python3 tests/data/capture.py tests/data'
"""
import os, socket, struct, subprocess, sys

RTM_NEWNSID, RTM_GETNSID = 88, 90
NLM_F_REQUEST, NLM_F_DUMP = 1, 0x300
NETNSA_NSID, NETNSA_FD, NETNSA_TARGET_NSID = 1, 3, 4
SOL_NETLINK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK = 270, 11, 12

out = sys.argv[1]

def ip(*args):
    subprocess.run(['ip', *args], check=True)

def attr(t, v):
    return struct.pack('=HHi', 8, t, v)

def msg(t, flags, seq, attrs=b''):
    body = struct.pack('=Bxxx', 0) + attrs
    return struct.pack('=IHHII', 16 + len(body), t, flags, seq, 0) + body

def save(name, data):
    with open(os.path.join(out, name + '.hex'), 'w') as f:
        f.write(data.hex() + '\n')

for n in ('ca', 'cb', 'cc'):
    ip('netns', 'add', n)
ev = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
ev.settimeout(5)
ev.bind((0, 0))
ev.setsockopt(SOL_NETLINK, 1, 28)  # NETLINK_ADD_MEMBERSHIP RTNLGRP_NSID
ip('netns', 'set', 'ca', '5')
save('event_new', ev.recv(65536))
ip('netns', 'set', 'cb', 'auto')
ev.recv(65536)
ip('-n', 'ca', 'netns', 'set', 'cb', '7')  # for the TARGET replies below

rq = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
rq.settimeout(5)
rq.bind((0, 0))
rq.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
rq.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
rq.send(msg(RTM_GETNSID, NLM_F_REQUEST | NLM_F_DUMP, 1))
save('dump_reply', rq.recv(32768))  # the entries and NLMSG_DONE share one datagram
rq.send(msg(RTM_GETNSID, NLM_F_REQUEST | NLM_F_DUMP, 2, attr(NETNSA_TARGET_NSID, 5)))
save('dump_target_reply', rq.recv(32768))
rq.send(msg(RTM_GETNSID, NLM_F_REQUEST | NLM_F_DUMP, 3, attr(NETNSA_TARGET_NSID, 99)))
save('dump_bad_target', rq.recv(32768))
rq.send(msg(RTM_GETNSID, NLM_F_REQUEST, 4, attr(NETNSA_NSID, 12345)))
save('get_enoent', rq.recv(32768))
rq.send(msg(RTM_GETNSID, NLM_F_REQUEST, 5, attr(NETNSA_NSID, 0) + attr(NETNSA_TARGET_NSID, 5)))
save('get_target_reply', rq.recv(32768))
fd = os.open('/run/netns/cb', os.O_RDONLY)
rq.send(msg(RTM_GETNSID, NLM_F_REQUEST, 6, attr(NETNSA_FD, fd)))
save('get_fd_reply', rq.recv(32768))
os.close(fd)
ip('netns', 'del', 'ca')
save('event_del', ev.recv(65536))
