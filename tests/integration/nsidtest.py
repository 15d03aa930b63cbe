# SPDX-License-Identifier: LGPL-2.1-or-later
"""Integration test harness: a private sandbox, the real kernel, the real nsidd and nsidctl.

Every test re-executes itself inside `unshare --net --mount` with a tmpfs on /run, so that all
namespaces and ids it creates live in a network namespace of its own and vanish with it; the
machine's own netns is never touched. A test that cannot run here fails and says why: it is
never skipped, since a skipped test would pass unseen.

The kernel side is read here with raw netlink, independently of nsidd's code: per-id GETNSID
probes (by NSID over the dense range and the known sparse ids, and by FD for every name).
"""
import atexit
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

# An ASan/UBSan build: memory bounds are not meaningful there (shadow memory, quarantine).
SANITIZED = os.environ.get('NSIDD_SANITIZED') == '1'
BUILD = os.environ.get('NSIDD_BUILD', os.path.join(os.path.dirname(__file__), '../../build'))
NSIDD = os.path.join(BUILD, 'daemon/nsidd')
NSIDCTL = os.path.join(BUILD, 'cli/nsidctl')
# NSIDD_VALGRIND=1: nsidd and nsidctl run under valgrind's memcheck, and any error it reports
# (invalid access, uninitialised value, definite leak) fails the run with exit status 99.
VALGRIND = ['valgrind', '--quiet', '--error-exitcode=99', '--leak-check=full',
            '--errors-for-leak-kinds=definite', '--show-leak-kinds=definite'] \
    if os.environ.get('NSIDD_VALGRIND') == '1' else []

RTM_NEWNSID, RTM_GETNSID = 88, 90
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 1, 4, 0x300
NETNSA_NSID, NETNSA_FD = 1, 3
SOL_NETLINK = 270


def log(*args):
    print(*args, flush=True)


def cannot_run(why):
    log('CANNOT RUN:', why)
    sys.exit(1)


def sandbox(pid=False):
    """Re-runs the calling script inside a private network and mount namespace (`pid`: and a
    PID namespace with its own /proc, where only the test's processes are seen)."""
    if os.environ.get('NSIDD_SANDBOX') == '1':
        if VALGRIND:
            log('nsidd and nsidctl run under valgrind memcheck')
        subprocess.run(['mount', '-t', 'tmpfs', 'tmpfs', '/run'], check=True)
        subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)
        return
    if os.geteuid() != 0:
        cannot_run('needs root to create network namespaces')
    for tool in ('unshare', 'ip', 'mount'):
        if subprocess.run(['sh', '-c', 'command -v ' + tool], capture_output=True).returncode:
            cannot_run(tool + ' not installed')
    if not os.path.exists(NSIDD):
        cannot_run('nsidd not built at ' + NSIDD)
    env = dict(os.environ, NSIDD_SANDBOX='1')
    args = ['unshare', '--net', '--mount', '--propagation', 'private'] + \
        (['--pid', '--fork', '--mount-proc'] if pid else []) + \
        ['--', sys.executable, os.path.abspath(sys.argv[0])] + sys.argv[1:]
    sys.exit(subprocess.run(args, env=env).returncode)


def ip_batch(lines):
    with tempfile.NamedTemporaryFile('w', suffix='.batch', delete=False) as f:
        f.write('\n'.join(lines) + '\n')
    try:
        subprocess.run(['ip', '-batch', f.name], check=True)
    finally:
        os.unlink(f.name)


def ip_batch_in(netns, lines):
    """`ip -n NETNS -batch`: the commands run in that namespace."""
    with tempfile.NamedTemporaryFile('w', suffix='.batch', delete=False) as f:
        f.write('\n'.join(lines) + '\n')
    try:
        subprocess.run(['ip', '-n', netns, '-batch', f.name], check=True)
    finally:
        os.unlink(f.name)


def busy_host(procs, fds):
    """Forks `procs` processes, each holding `fds` open fds (/dev/null, pipes, Unix sockets and
    regular files, the mix of a real host), for the fd-search benchmarks; returns their pids
    (end them with end_busy_host)."""
    work = tempfile.mkdtemp()
    children = []
    for _ in range(procs):
        pid = os.fork()
        if pid == 0:
            keep = []
            for k in range(fds):
                kind = k % 5
                if kind == 0:
                    keep.append(os.open('/dev/null', os.O_RDONLY))
                elif kind == 1:
                    keep.extend(os.pipe())
                elif kind == 2:
                    keep.append(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
                else:
                    keep.append(os.open(os.path.join(work, 'f%d' % (k % 7)),
                                        os.O_RDONLY | os.O_CREAT))
            signal.pause()
            os._exit(0)
        children.append(pid)
    return children


def end_busy_host(children):
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)


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


class Kernel:
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


NS_GET_ID = 0x8008b70d  # _IOR(0xb7, 13, __u64)


def identity(path):
    """(cookie, inode) of the namespace at `path`: NS_GET_ID and the nsfs inode."""
    fd = os.open(path, os.O_RDONLY)
    try:
        cookie = struct.unpack('=Q', fcntl.ioctl(fd, NS_GET_ID, bytes(8)))[0]
        return cookie, os.fstat(fd).st_ino
    finally:
        os.close(fd)


def parse_iso8601(text):
    """Seconds since the epoch of nsidd's "2026-11-27T21:00:00.123456Z"."""
    import datetime
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%S.%fZ').replace(
        tzinfo=datetime.timezone.utc).timestamp()


def wait_for(what, check, timeout=20, interval=0.1):
    """Polls `check()` until it returns a true value, which it returns; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for ' + what)
        time.sleep(interval)


def fd_targets(pid):
    """What the fds of `pid` point at now; an fd closed while they are read is left out."""
    out = []
    for fd in os.listdir('/proc/%d/fd' % pid):
        try:
            out.append(os.readlink('/proc/%d/fd/%s' % (pid, fd)))
        except FileNotFoundError:
            pass
    return out


def wait_for_value(what, get, timeout=20):
    """Polls `get()` until it returns something other than None (an nsid may be 0)."""
    box = []

    def check():
        v = get()
        if v is not None:
            box.append(v)
        return v is not None
    wait_for(what, check, timeout)
    return box[-1]


class Varlink:
    """A minimal Varlink client written from the public spec (varlink.org), sharing nothing
    with nsidd's own implementation."""

    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b''

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, method, parameters=None, more=False, oneway=False):
        msg = {'method': method}
        if parameters is not None:
            msg['parameters'] = parameters
        if more:
            msg['more'] = True
        if oneway:
            msg['oneway'] = True
        self.send_raw(json.dumps(msg).encode() + b'\0')

    def receive(self):
        """The next message as a dict, or None if the server closed the connection."""
        while b'\0' not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.buf += chunk
        msg, _, self.buf = self.buf.partition(b'\0')
        return json.loads(msg)

    def call(self, method, parameters=None):
        self.send(method, parameters)
        return self.receive()

    def close(self):
        self.sock.close()


_started = []
_processes = []


def track(proc):
    """Ends `proc` (by its pid) when the test exits, passed or failed; returns it."""
    _processes.append(proc)
    return proc


_cgroups = []


def cgroups(paths):
    """Makes the cgroup directories `paths` (relative; each test puts them under a parent of
    its own) in the cgroup v2 hierarchy, mounted privately at /run/cg2, and where the host has
    one in the v1 name=systemd hierarchy (/run/cgsd, hybrid hosts); returns the hierarchies'
    mount points. They are removed when the test exits, after the tracked processes end."""
    roots = ['/run/cg2']
    os.makedirs('/run/cg2', exist_ok=True)
    if subprocess.run(['mount', '-t', 'cgroup2', 'none', '/run/cg2']).returncode != 0:
        cannot_run('cannot mount the cgroup v2 hierarchy')
    with open('/proc/self/cgroup') as f:
        if any(':name=systemd:' in line for line in f):
            os.makedirs('/run/cgsd', exist_ok=True)
            subprocess.run(['mount', '-t', 'cgroup', '-o', 'none,name=systemd', 'none',
                            '/run/cgsd'], check=True)
            roots.append('/run/cgsd')
    for path in paths:
        for root in roots:
            parts = path.split('/')
            for i in range(1, len(parts) + 1):
                d = os.path.join(root, *parts[:i])
                if not os.path.isdir(d):
                    os.mkdir(d)
                    _cgroups.append(d)
    return roots


@atexit.register
def _stop_leftovers():
    """A failed test still ends the processes it started (by their pid), then removes the
    cgroups it made."""
    for d in _started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
            sys.stderr.write('nsidd log:\n' + d.log())
    for p in _processes:
        if p.poll() is None:
            p.kill()
            p.wait()
    for path in sorted(_cgroups, key=len, reverse=True):
        try:
            os.rmdir(path)
        except OSError as e:
            log('could not remove %s: %s' % (path, e))


class Daemon:
    """A real nsidd on a socket in the sandbox."""

    def __init__(self, *args, socket_path='/run/nsidd-test/io.nsidd.Registry', wrap=()):
        """`wrap`: a command that runs nsidd, e.g. ('ip', 'netns', 'exec', 'other')."""
        self.socket = socket_path
        defaults = [] if '--metrics-listen' in args else ['--metrics-listen', 'none']
        self.args = list(wrap) + VALGRIND + [NSIDD, '--socket', socket_path, '--config', '/dev/null'] + \
            defaults + list(args)
        self.stderr = tempfile.TemporaryFile('w+')
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=self.stderr)
        _started.append(self)
        self.wait_ready()

    def wait_ready(self, timeout=120 if VALGRIND else 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('nsidd exited with %d: %s' % (self.proc.returncode, self.log()))
            try:
                c = Varlink(self.socket)
                r = c.call('io.nsidd.Registry.GetStatus')
                c.close()
                if r and 'parameters' in r:
                    self.ready_after = time.monotonic() - self.started
                    return
            except OSError:
                pass
            # Finely at first: ready_after is what the benchmarks report as start-up time.
            time.sleep(0.002 if time.monotonic() - self.started < 5 else 0.02)
        raise RuntimeError('nsidd not ready after %ds' % timeout)

    def call(self, method, parameters=None):
        c = Varlink(self.socket)
        try:
            return c.call(method, parameters)
        finally:
            c.close()

    def status(self):
        return self.call('io.nsidd.Registry.GetStatus')['parameters']

    def mirror(self):
        entries = self.call('io.nsidd.Registry.List')['parameters']['entries']
        return {e['nsid'] for e in entries}

    def rss_kib(self):
        with open('/proc/%d/status' % self.proc.pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
        return 0

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError('nsidd ignored SIGTERM')
        assert self.proc.returncode == 0, 'nsidd exited %d: %s' % (self.proc.returncode,
                                                                   self.log())


class Activation:
    """Sockets held the way the service manager holds them for socket activation (nsidd.socket
    and nsidd-netlink.socket): a Varlink listener and a netlink socket bound to RTNLGRP_NSID.
    nsidd started with them gets them as fds 3 and 4; while it is down, the kernel keeps
    queueing events into the netlink socket."""

    def __init__(self, path, rcvbuf=4 << 20, log_path='/run/activated.log'):
        self.path, self.log_path = path, log_path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        self.events.bind((0, 1 << 27))  # RTNLGRP_NSID as a bind mask: ListenNetlink=route 134217728
        # As ReceiveBuffer= does: forced, past net.core.rmem_max.
        self.events.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE

    def rcvbuf(self):
        """The held netlink socket's receive buffer as the kernel reports it (twice the set)."""
        return self.events.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def start(self, *args, timeout=30):
        """Starts nsidd on the held sockets; returns (process, GetStatus parameters)."""
        env = dict(os.environ, LISTEN_FDS='2', LISTEN_FDNAMES='varlink:netlink')
        env.pop('NOTIFY_SOCKET', None)
        a, b = self.listener.fileno(), self.events.fileno()
        # As the service manager does: fds 3 and 4, LISTEN_PID of the exec'd process itself.
        p = track(subprocess.Popen(
            ['sh', '-c', 'exec 3<&%d 4<&%d; LISTEN_PID=$$ exec "$0" "$@"' % (a, b), NSIDD,
             '--config', '/dev/null', '--socket', '/run/unused.sock', '--metrics-listen',
             'none'] + list(args),
            env=env, pass_fds=(a, b), stderr=open(self.log_path, 'a')))
        deadline = time.monotonic() + timeout
        while True:
            try:
                c = Varlink(self.path)
                r = c.call('io.nsidd.Registry.GetStatus')
                c.close()
                if r and 'parameters' in r:
                    return p, r['parameters']
            except OSError:
                pass
            assert time.monotonic() < deadline and p.poll() is None, open(self.log_path).read()
            time.sleep(0.02)

    def call(self, method, parameters=None):
        c = Varlink(self.path)
        try:
            return c.call(method, parameters)['parameters']
        finally:
            c.close()


def nsidctl(*args, socket_path=None, check=True):
    cmd = VALGRIND + [NSIDCTL] + (['--socket', socket_path] if socket_path else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError('%s: exit %d: %s' % (' '.join(cmd), r.returncode, r.stderr))
    return r


def settle(daemon, kernel, hint=(), timeout=20):
    """Waits until the mirror equals the kernel table; returns both (equal, or the last seen)."""
    deadline = time.monotonic() + timeout
    while True:
        want = kernel.table(hint)
        got = daemon.mirror()
        if got == want or time.monotonic() > deadline:
            return got, want
        time.sleep(0.2)


def entries(daemon):
    """{nsid: Entry} of self's table as nsidd serves it."""
    return {e['nsid']: e for e in daemon.call('io.nsidd.Registry.List')['parameters']['entries']}


def deaths(daemon):
    return daemon.call('io.nsidd.Registry.History')['parameters']['deaths']


def metric(daemon, series):
    """The value of one series of GetMetrics, e.g. 'nsidd_peers{state="pinned"}'."""
    text = daemon.call('io.nsidd.Registry.GetMetrics')['parameters']['text']
    for line in text.splitlines():
        if line.startswith(series + ' ') or (line.startswith(series + '{') and '{' not in series):
            return float(line.rsplit(' ', 1)[1])
    raise AssertionError('no metric ' + series)


def check_equal(got, want, what):
    if got != want:
        extra, missing = sorted(got - want), sorted(want - got)
        raise AssertionError('%s: mirror has %d entries, kernel %d; extra %s; missing %s'
                             % (what, len(got), len(want), extra[:20], missing[:20]))
    log('%s: mirror equals the kernel (%d entries)' % (what, len(want)))
