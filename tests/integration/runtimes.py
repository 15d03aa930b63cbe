# SPDX-License-Identifier: LGPL-2.1-or-later
"""Real container runtimes for the integration tests: Debian 12's dockerd (docker.io) and
podman, each run inside the test's sandbox (t.sandbox(pid=True): network, mount and PID
namespaces of its own, /run on tmpfs).

- Data and exec roots are on tmpfs mounts of the sandbox: nothing is written to the machine's
  /var/lib/docker or /var/lib/containers.
- No firewall rule is made outside the sandbox: dockerd runs with --iptables=false; podman's
  netavark writes its rules in the sandbox's network namespace, which dies with it.
- The containers' cgroups go under a parent of the test's own (cgroupfs driver,
  --cgroup-parent), removed at exit once every process of the sandbox has ended.
- The image is made offline: a busybox-static root (/bin/busybox and the applets the tests
  run) imported with `docker import` / `podman import`; it takes well under a second, so each
  run makes it afresh in its tmpfs root instead of keeping it anywhere.
A runtime that is missing or cannot start makes the test fail with the reason."""
import atexit
import glob
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import uuid

import nsidtest as t

IMAGE = 'nsidd-test/busybox'
# The containers' cgroups: under a parent of this test's own, in every hierarchy.
CGROUP_PARENT = '/nsidd-test-' + uuid.uuid4().hex[:12]
# Every cgroup tree the sandbox's runtimes made, removed at exit (a pod of `podman kube play`
# adds its own: podman 4.3 puts it under /libpod_parent, with no option for another parent).
OWN_CGROUPS = [CGROUP_PARENT]


def _busybox_root():
    """A tar of a root with busybox-static's /bin/busybox and the applets the tests run (an
    agent container's copy is freed with `nsenter -t PID -m --root umount`: its own umount)."""
    busybox = shutil.which('busybox')
    if busybox is None:
        t.cannot_run('busybox not installed (Debian package busybox-static)')
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w') as tar:
        tar.add(busybox, arcname='bin/busybox')
        for applet in ('sh', 'sleep', 'umount', 'rm'):
            link = tarfile.TarInfo('bin/' + applet)
            link.type, link.linkname = tarfile.SYMTYPE, 'busybox'
            tar.addfile(link)
    return out.getvalue()


def _tmpfs(path):
    os.makedirs(path, exist_ok=True)
    subprocess.run(['mount', '-t', 'tmpfs', 'tmpfs', path], check=True)


@atexit.register
def _end_sandbox():
    """Ends every process of the sandbox's PID namespace but this one (dockerd, containerd,
    shims, conmon and containers, whatever became of them), then removes the cgroups the
    runtimes made (OWN_CGROUPS)."""
    if os.getpid() != 1:
        return
    for _ in range(100):
        others = [int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != 1]
        if not others:
            break
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        time.sleep(0.05)
    for top in [p for own in OWN_CGROUPS for p in glob.glob('/sys/fs/cgroup/%s' % own) +
                glob.glob('/sys/fs/cgroup/*%s' % own)]:
        for path, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(path)
            except OSError as e:
                t.log('could not remove %s: %s' % (path, e))


def reap():
    """Collects the sandbox's exited processes (this test is their init)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def kill_named(*names):
    """SIGKILLs every process of the sandbox whose command is one of `names`; returns them."""
    killed = []
    for p in os.listdir('/proc'):
        if not p.isdigit() or int(p) == 1:
            continue
        try:
            with open('/proc/%s/comm' % p) as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in names or any(comm.startswith(n) for n in names if n.endswith('-')):
            try:
                os.kill(int(p), signal.SIGKILL)
                killed.append((int(p), comm))
            except ProcessLookupError:
                pass
    return killed


class Runtime:
    """A runtime's command line, run and checked."""
    tool = None

    def __call__(self, *args, check=True, input=None):
        r = subprocess.run(self.command + list(args), capture_output=True, input=input)
        if check and r.returncode != 0:
            raise AssertionError('%s %s: exit %d: %s' % (self.tool, ' '.join(args), r.returncode,
                                                         r.stderr.decode(errors='replace')))
        return r.stdout.decode().strip()

    def inspect(self, name):
        return json.loads(self('inspect', name))[0]


class Docker(Runtime):
    """dockerd (with its own containerd) on a socket of the sandbox, data on tmpfs."""
    tool = 'docker'

    def __init__(self):
        for tool in ('/usr/sbin/dockerd', '/usr/bin/docker', 'containerd', 'runc'):
            if shutil.which(tool) is None:
                t.cannot_run(tool + ' not installed (Debian packages docker.io, runc)')
        _tmpfs('/var/lib/nsidd-test-docker')
        self.command = ['/usr/bin/docker', '-H', 'unix:///run/nsidd-docker.sock']
        self.log = open('/run/dockerd.log', 'w')
        self.daemon = subprocess.Popen(
            ['/usr/sbin/dockerd', '--data-root', '/var/lib/nsidd-test-docker',
             '--exec-root', '/run/docker', '--pidfile', '/run/nsidd-docker.pid',
             '-H', 'unix:///run/nsidd-docker.sock', '--iptables=false', '--ip6tables=false',
             '--ip-masq=false', '--ip-forward=false', '--userland-proxy=false',
             '--storage-driver', 'vfs', '--cgroup-parent', CGROUP_PARENT + '/docker'],
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            t.wait_for('dockerd up', lambda: subprocess.run(
                self.command + ['version'], capture_output=True).returncode == 0, timeout=60,
                interval=0.2)
        except AssertionError:
            t.cannot_run('dockerd did not start: ' + open('/run/dockerd.log').read()[-2000:])
        self('import', '-', IMAGE, input=_busybox_root())


class Podman(Runtime):
    """podman (runc, netavark, conmon) with its storage on tmpfs and cgroupfs cgroups."""
    tool = 'podman'

    def __init__(self):
        for tool in ('podman', 'conmon', 'runc'):
            if shutil.which(tool) is None:
                t.cannot_run(tool + ' not installed (Debian packages podman, conmon, runc)')
        _tmpfs('/var/lib/nsidd-test-podman')
        # runc: crun refuses hybrid cgroup hierarchies, which some hosts still have.
        self.command = ['podman', '--runtime', shutil.which('runc'),
                        '--root', '/var/lib/nsidd-test-podman/root',
                        '--runroot', '/run/containers', '--tmpdir', '/run/libpod',
                        '--cgroup-manager', 'cgroupfs', '--events-backend', 'file']
        self('import', '-', IMAGE, input=_busybox_root())

    def run(self, *args):
        return self('run', '-d', '--cgroup-parent', CGROUP_PARENT, *args)


def stale_entry(d, nsid, what, timeout):
    """The row of `nsid` once it is stale-mount (its last look in the error otherwise)."""
    try:
        return t.wait_for(what, lambda: (lambda e: e if e and e['state'] == 'stale_mount'
                                         else None)(t.entries(d).get(nsid)), timeout=timeout)
    except AssertionError:
        raise AssertionError(t.entries(d).get(nsid))


def without_id(d, cookie):
    """The namespace without an id whose cookie is `cookie`, if nsidd lists it."""
    got = [n for n in d.call('io.nsidd.Registry.ListWithoutNsid')['parameters']['namespaces']
           if n['peer']['cookie'] == cookie]
    return got[0] if got else None


class LeakScenario:
    """What an operator meets with a real runtime, against a real nsidd (leak_scenario)."""
    GRACE, INTERVAL = 3, 1

    def __init__(self, runtime, start, remove, crash):
        os.makedirs('/run/nsidd-test', exist_ok=True)
        self.runtime, self.start, self.remove, self.crash = runtime, start, remove, crash
        self.kernel = t.NsidTable()
        self.args = ('--orphan-grace', str(self.GRACE), '--discovery-interval',
                     str(self.INTERVAL), '--id-cache', '/run/nsidd-test/ids')
        self.d = t.Daemon(*self.args)

    def container(self, name):
        cid = self.start(name)
        info = self.runtime.inspect(cid)
        key = info['NetworkSettings']['SandboxKey']
        nsid = t.wait_for_value(name + "'s nsid", lambda: self.kernel.by_path([key])[key])
        return cid, info['State']['Pid'], key, nsid

    def owned_active(self, nsid, cid):
        e = t.entries(self.d).get(nsid)
        o = (e or {}).get('peer', {}).get('owner') or {}
        return e and e['state'] == 'active' and o.get('runtime') == self.runtime.tool and \
            o.get('container') == cid

    def none_in(self, state):
        """The --network none container's namespace, once in `state` and owned."""
        got = without_id(self.d, self.cookie3)
        o = (got['peer']['owner'] or {}) if got else {}
        return got if got and got['state'] == state and o.get('container') == self.c3 else None

    def running(self):
        """Running containers are active and owned; a removed one's death names it."""
        tool = self.runtime.tool
        self.c1, self.pid1, self.key1, self.n1 = self.container('c1')
        t.wait_for('c1 active, owned', lambda: self.owned_active(self.n1, self.c1))
        # --network none: a namespace the runtime mounts too, with no veth, so no id anywhere.
        self.c3 = self.start('c3', '--network', 'none')
        info3 = self.runtime.inspect(self.c3)
        key3, self.pid3 = info3['NetworkSettings']['SandboxKey'], info3['State']['Pid']
        # Podman mounts none for it (its process alone holds it); Docker does.
        self.key3 = key3 or '/proc/%d/ns/net' % self.pid3
        self.cookie3 = t.identity(self.key3)[0]
        assert self.kernel.by_path([self.key3])[self.key3] is None, \
            'a --network none namespace has an id'
        t.wait_for('c3 (no id) active, owned', lambda: self.none_in('active'))
        c2, _, _, n2 = self.container('c2')
        t.wait_for('c2 active, owned', lambda: self.owned_active(n2, c2))
        t.log('%s: running containers active, owner %s:%s (nsid %d, %s)' % (
            tool, tool, self.c1[:12], self.n1, self.key1))
        self.remove('c2')
        t.wait_for('c2 dead in history', lambda: any(
            x['nsid'] == n2 and (x['peer']['owner'] or {}).get('container') == c2
            for x in t.deaths(self.d)))
        t.log('%s rm: the death recorded with container %s' % (tool, c2[:12]))

    def crashed(self):
        """The runtime and the containers killed: stale-mount within the grace and one pass."""
        killed = self.crash()
        os.kill(self.pid1, signal.SIGKILL)
        os.kill(self.pid3, signal.SIGKILL)
        reap()
        crashed = time.monotonic()
        e = stale_entry(self.d, self.n1, 'c1 stale-mount', self.GRACE + self.INTERVAL + 15)
        by_process = self.key3.startswith('/proc/')
        if by_process:  # nothing held it but its process: it died with it
            t.wait_for('c3 (no id) gone', lambda: not without_id(self.d, self.cookie3),
                       timeout=15)
        else:
            t.wait_for('c3 (no id) stale-mount', lambda: self.none_in('stale_mount'), timeout=15)
        took = time.monotonic() - crashed
        assert e['peer']['owner']['container'] == self.c1, e
        assert e['peer']['holders']['mounts'][0].endswith(os.path.basename(self.key1)), e
        t.log('killed %s and the containers: stale-mount after %.1f s (grace %d s, interval %d '
              's), held by %s; the --network none one (no id, %s): %s' % (
                  sorted({c for _, c in killed}), took, self.GRACE, self.INTERVAL,
                  e['peer']['holders']['mounts'], self.key3,
                  'gone with its process' if by_process else 'stale-mount too'))
        none_leak = [x for x in json.loads(t.nsidctl('-j', 'leaks',
                                                     socket_path=self.d.socket).stdout)
                     if x.get('nsid') is None and x['peer']['cookie'] == self.cookie3]
        assert len(none_leak) == (0 if by_process else 1), none_leak
        for leak in none_leak:
            subprocess.run(['sh', '-c', leak['command']], check=True)
            t.wait_for('c3 gone', lambda: not without_id(self.d, self.cookie3))
            t.log('`%s` freed it' % leak['command'])
        self.d.stop()
        return e

    def restarted(self, e):
        """A restarted nsidd judges it at its first look: same leaking-since, same owner."""
        d = t.Daemon(*self.args)
        again = stale_entry(d, self.n1, 'c1 judged again', self.GRACE + 15)
        assert again['leaking_since'] == e['leaking_since'], (e, again)
        assert again['peer']['owner'] == e['peer']['owner'], (e, again)
        leak = {x.get('nsid'): x for x in json.loads(
            t.nsidctl('-j', 'leaks', socket_path=d.socket).stdout)}[self.n1]
        assert ('%s rm -f %s' % (self.runtime.tool, self.c1)) in leak['action'], leak
        t.log('restart: stale-mount again, leaking since %s, owner kept; nsidctl leaks: %s' % (
            again['leaking_since'], leak['action']))
        d.stop()
        return leak

    def fresh(self, leak):
        """An nsidd that never saw it (no id cache): the leak is older than it, judged after
        the grace; owned by what its path says. A namespace with a process inside stays
        active. The printed command frees it."""
        control = t.in_new_netns('the control in its namespace')
        t.ip_batch(['netns attach ctl %d' % control.pid, 'netns set ctl auto'])
        ctl = self.kernel.by_name()['ctl']
        d = t.Daemon('--orphan-grace', str(self.GRACE), '--discovery-interval',
                     str(self.INTERVAL), '--id-cache', 'none')
        started = time.monotonic()
        fresh = stale_entry(d, self.n1, 'c1 judged by a fresh nsidd', self.GRACE + 15)
        o = fresh['peer']['owner']
        assert o['runtime'] == self.runtime.tool and \
            o['sandbox'] == os.path.basename(self.key1), fresh
        assert t.entries(d)[ctl]['state'] == 'active', t.entries(d)[ctl]
        t.log('a fresh nsidd: stale-mount %.1f s after its start, owner %s; the control '
              'active' % (time.monotonic() - started, o))
        subprocess.run(['sh', '-c', leak['command']], check=True)
        t.wait_for('c1 dead', lambda: self.n1 not in t.entries(d))
        assert any(x['nsid'] == self.n1 for x in t.deaths(d))
        t.log('`%s` freed it' % leak['command'])
        d.stop()


def leak_scenario(runtime, start, remove, crash):
    """What an operator meets with a real runtime, against a real nsidd:
    - a running container is `active`, owner.runtime and owner.container as `inspect` says;
    - removing a container (`remove(name)`) records its death with that container id;
    - `crash()` kills the runtime's own processes (as when it is killed or hangs for good),
      then the container's process is killed: its sandbox mount is left behind, and nsidd
      calls it `stale-mount` within the grace and one discovery interval, owner kept;
    - after an nsidd restart it is judged again at the first look, with the same
      leaking-since and owner;
    - the command `nsidctl leaks` prints for it, run as printed, frees the namespace.
    `start(name, *extra_args)` returns the container's id; a `--network none` container
    (no veth, so no id in any table) is judged the same, through ListWithoutNsid."""
    s = LeakScenario(runtime, start, remove, crash)
    s.running()
    e = s.crashed()
    s.fresh(s.restarted(e))
