# SPDX-License-Identifier: LGPL-2.1-or-later
"""The tests' own rtnetlink client: what this netns's nsid table holds, read with raw GETNSID
requests and TARGET_NSID dumps, and ids given as `ip netns set NAME auto` gives them. The tests
compare nsidd's mirror with what this reads."""
import os
import socket
import struct

RTM_NEWNSID, RTM_GETNSID = 88, 90
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 1, 4, 0x300
NETNSA_NSID, NETNSA_FD = 1, 3
SOL_NETLINK = 270



def netns_names():
    try:
        return sorted(os.listdir('/run/netns'))
    except FileNotFoundError:
        return []


class Assigner:
    """Gives namespaces ids as `ip netns set NAME auto` does (RTM_NEWNSID with NETNSA_NSID -1
    and NETNSA_FD), one request at a time: send(), then ack() (the kernel queues the event
    before it answers)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        self.sock.bind((0, 0))
        self.sock.settimeout(5)
        self.seq = 0

    def send(self, fd):
        self.seq += 1
        body = struct.pack('=Bxxx', 0) + struct.pack('=HHi', 8, NETNSA_NSID, -1) + \
            struct.pack('=HHi', 8, NETNSA_FD, fd)
        self.sock.send(struct.pack('=IHHII', 16 + len(body), RTM_NEWNSID,
                                   NLM_F_REQUEST | NLM_F_ACK, self.seq, 0) + body)

    def ack(self):
        """The kernel's answer: 0, or a negative errno."""
        return struct.unpack_from('=i', self.sock.recv(4096), 16)[0]


class NsidTable:
    """Reads this netns's nsid table with raw netlink GETs, packed many to a datagram."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((0, 0))
        self.sock.settimeout(5)
        self.seq = 0

    def _request(self, attrs_list):
        """One GETNSID per attribute blob; returns {index: nsid or None}."""
        out = {}
        for start in range(0, len(attrs_list), 200):
            chunk = attrs_list[start:start + 200]
            first = self.seq + 1
            data = b''
            for attrs in chunk:
                self.seq += 1
                body = struct.pack('=Bxxx', 0) + attrs
                data += struct.pack('=IHHII', 16 + len(body), RTM_GETNSID, NLM_F_REQUEST,
                                    self.seq, 0) + body
            self.sock.send(data)
            got = 0
            while got < len(chunk):
                buf = self.sock.recv(65536)
                off = 0
                while off + 16 <= len(buf):
                    length, mtype, _flags, seq, _pid = struct.unpack_from('=IHHII', buf, off)
                    idx = start + seq - first
                    if mtype == RTM_NEWNSID:
                        nsid = None
                        a = off + 20
                        while a + 4 <= off + length:
                            alen, atype = struct.unpack_from('=HH', buf, a)
                            if atype == NETNSA_NSID:
                                nsid = struct.unpack_from('=i', buf, a + 4)[0]
                            a += (alen + 3) & ~3
                        out[idx] = nsid if nsid is not None and nsid >= 0 else None
                        got += 1
                    elif mtype == NLMSG_ERROR:
                        out[idx] = None
                        got += 1
                    off += (length + 3) & ~3
        return out

    def target_dump(self, target):
        """Observer `target`'s table (TARGET_NSID dump): {nsid: self's id for the peer or -1}.
        Raises OSError if the kernel refuses (unknown target)."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        try:
            sock.setsockopt(SOL_NETLINK, 12, 1)  # NETLINK_GET_STRICT_CHK: parse TARGET_NSID
            sock.bind((0, 0))
            sock.settimeout(5)
            body = struct.pack('=Bxxx', 0) + struct.pack('=HHi', 8, 4, target)
            sock.send(struct.pack('=IHHII', 16 + len(body), RTM_GETNSID,
                                  NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
            out = {}
            while True:
                buf = sock.recv(65536)
                off = 0
                while off + 16 <= len(buf):
                    length, mtype = struct.unpack_from('=IH', buf, off)
                    if mtype == NLMSG_DONE or mtype == NLMSG_ERROR:
                        err = struct.unpack_from('=i', buf, off + 16)[0] if length >= 20 else 0
                        if err < 0:
                            raise OSError(-err, 'TARGET dump of %d' % target)
                        return out
                    attrs, a = {}, off + 20
                    while a + 8 <= off + length:
                        alen, atype = struct.unpack_from('=HH', buf, a)
                        attrs[atype] = struct.unpack_from('=i', buf, a + 4)[0]
                        a += (alen + 3) & ~3
                    out[attrs[NETNSA_NSID]] = attrs.get(5, -1)
                    off += (length + 3) & ~3
        finally:
            sock.close()

    def graph(self, hint=()):
        """Every table: {"self": {nsid: nsid}, observer: {nsid: current}} for each observer
        self has an id for (small tables: one TARGET dump each)."""
        own = self.table(hint)
        out = {'self': {k: k for k in own}}
        for o in own:
            try:
                out[o] = self.target_dump(o)
            except OSError:
                pass  # died since
        return out

    def by_nsid(self, ids):
        ids = list(ids)
        res = self._request([struct.pack('=HHi', 8, NETNSA_NSID, k) for k in ids])
        return {ids[i] for i, v in res.items() if v is not None}

    def by_path(self, paths):
        """{path: nsid or None} for namespace files (/run/netns/NAME, /proc/PID/ns/net)."""
        fds = []
        try:
            for p in paths:
                fds.append(os.open(p, os.O_RDONLY))
            res = self._request([struct.pack('=HHi', 8, NETNSA_FD, fd) for fd in fds])
        finally:
            for fd in fds:
                os.close(fd)
        return {paths[i]: v for i, v in res.items()}

    def by_name(self):
        """{name: nsid or None} for every /run/netns name."""
        names = netns_names()
        res = self.by_path(['/run/netns/' + n for n in names])
        return {n: res['/run/netns/' + n] for n in names}

    def table(self, hint=()):
        """The whole table: dense range by NSID (until 1024 misses past the last hit), the
        `hint` ids, and every named namespace by FD."""
        found = set()
        k, limit = 0, 1024
        while k < limit:
            hits = self.by_nsid(range(k, limit))
            found |= hits
            k = limit
            if hits:
                limit = max(hits) + 1025
        found |= self.by_nsid(set(hint) - found)
        found |= {v for v in self.by_name().values() if v is not None}
        return found
