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
import glob
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

from rtnl import Assigner, NsidTable, netns_names  # noqa: E402,F401 (re-exported)


def log(*args):
    print(*args, flush=True)


def mirror_url():
    """The Debian archive this machine's apt uses (for debootstrap)."""
    for path in glob.glob('/etc/apt/sources.list.d/*.sources') + ['/etc/apt/sources.list']:
        if not os.path.exists(path):
            continue
        for line in open(path):
            f = line.split()
            url = f[1] if f[:1] == ['URIs:'] else f[1] if len(f) >= 3 and f[0] == 'deb' else ''
            if url.rstrip('/').endswith('/debian'):
                return url
    return 'http://deb.debian.org/debian'


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


def in_new_netns(what='a process in a network namespace of its own'):
    """A process (sleep, tracked) in a new network namespace, once it is inside."""
    proc = track(subprocess.Popen(['unshare', '--net', 'sleep', '600']))
    own = os.readlink('/proc/self/ns/net')
    wait_for(what, lambda: os.readlink('/proc/%d/ns/net' % proc.pid) != own, interval=0.01)
    return proc


def mount_only(path):
    """A new network namespace that only a bind mount at `path` holds, the process that made it
    gone: the leak a runtime leaves behind. Returns its (cookie, inode)."""
    open(path, 'w').close()
    proc = in_new_netns('a namespace for ' + path)
    subprocess.run(['mount', '--bind', '/proc/%d/ns/net' % proc.pid, path], check=True)
    proc.kill()
    proc.wait()
    return identity(path)


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
