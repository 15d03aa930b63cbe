#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""nsidd as installed: the Debian package built from this tree, in a Debian 12 root booted by a
real systemd (systemd-nspawn -b --private-network), driven from outside as an administrator
would (nsenter into the container). It checks, in order:
 1. after boot both sockets are active and nsidd is not running; the first `nsidctl status`
    starts it;
 2. 200 namespaces created in the container are mirrored exactly (`ip netns list` asks the
    kernel per name: it is not cut like the dump);
 3. `systemctl reload nsidd` succeeds;
 4. a bad config: nsidd exits 2 and is not restarted in a loop, the sockets stay active; fixed,
    it starts again;
 5. stopped, namespaces created and deleted meanwhile: their events start nsidd again (through
    the netlink socket) and the table is exact; the socket's receive buffer, held by PID 1
    while nsidd was down, is still at least the unit's;
 6. `systemctl kill -s KILL`: restarted and exact;
 7. SIGSTOP: the watchdog (shortened by a drop-in, as an administrator would) restarts it;
 8. every journal entry has one CODE_FILE; the MESSAGE_IDs are there;
 9. metrics are served on 127.0.0.1:9477;
10. a user in group nsidd can list; one outside it is refused;
11. namespaces kept only by a socket created inside one and an fd of the other, in a root
    process, are fd-held, kind socket and ns (the service's user reads that process's fd links
    with CAP_DAC_READ_SEARCH, in a search process of its own, and copies only the socket, with
    pidfd_getfd, which the syscall filter lets through). Where the
    container's root is not shared (nspawn run from a chroot), the service's private mount
    namespace never sees /run/netns mounts: it names them through /proc/PID/root;
12. powered off: installing again keeps an edited config; purging removes what it made.
The Debian 12 root is made once with debootstrap and cached (NSIDD_TEST_CACHE, default
/var/cache/nsidd-test). Anything that keeps the test from running fails it with the reason."""
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '../integration'))
import nsidtest as t  # noqa: E402  (wait_for, mirror_url)

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), '../..'))
CACHE = os.environ.get('NSIDD_TEST_CACHE', '/var/cache/nsidd-test')
# Version of the cached root's recipe: bump it when the recipe changes.
RECIPE = 'bookworm-systemd-1'
TOOLS = ['systemd', 'systemd-sysv', 'iproute2', 'passwd', 'util-linux']
WORK = tempfile.mkdtemp(prefix='nsidd-system-')
started = time.monotonic()


def log(*args):
    print('[%6.1f s]' % (time.monotonic() - started), *args, flush=True)


def cannot_run(why):
    log('CANNOT RUN:', why)
    sys.exit(1)


def run(cmd, **kw):
    kw.setdefault('check', True)
    kw.setdefault('capture_output', True)
    kw.setdefault('text', True)
    try:
        return subprocess.run(cmd, **kw)
    except subprocess.CalledProcessError as e:
        raise AssertionError('%s: exit %d\n%s%s' % (' '.join(cmd), e.returncode, e.stdout,
                                                    e.stderr)) from None


def build_package():
    """dpkg-buildpackage on a copy of the tree (it writes into debian/ and the parent)."""
    src = os.path.join(WORK, 'src')
    files = run(['git', '-C', SOURCE, 'ls-files', '-co', '--exclude-standard', '-z']).stdout
    os.makedirs(src)
    for f in filter(None, files.split('\0')):
        if f.startswith(('build/', 'build-')) or not os.path.lexists(os.path.join(SOURCE, f)):
            continue
        os.makedirs(os.path.dirname(os.path.join(src, f)), exist_ok=True)
        shutil.copy2(os.path.join(SOURCE, f), os.path.join(src, f), follow_symlinks=False)
    r = subprocess.run(['dpkg-buildpackage', '-us', '-uc', '-b', '-jauto'], cwd=src, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise AssertionError('dpkg-buildpackage failed:\n' + r.stdout[-4000:])
    debs = glob.glob(os.path.join(WORK, 'nsidd_*_amd64.deb'))
    assert len(debs) == 1, debs
    lint = run(['lintian', '--allow-root', '--fail-on', 'error,warning',
                glob.glob(os.path.join(WORK, 'nsidd_*_amd64.changes'))[0]], check=False)
    assert lint.returncode == 0, 'lintian:\n' + lint.stdout + lint.stderr
    log('built %s (%d KiB); lintian: no errors or warnings'
        % (os.path.basename(debs[0]), os.path.getsize(debs[0]) // 1024))
    return debs[0]


def real_package(name):
    """`name`, or the package that provides it when it is virtual (debootstrap wants real ones)."""
    if 'Package: ' in run(['apt-cache', 'show', '--no-all-versions', name], check=False).stdout:
        return name
    provides = run(['apt-cache', 'showpkg', name]).stdout.split('Reverse Provides:')[-1].split()
    if not provides:
        cannot_run('no package provides %s (apt-get update?)' % name)
    return provides[0]


def cached_root(deb):
    """A Debian 12 root with systemd, the tools and the package's dependencies (cached)."""
    deps = run(['dpkg-deb', '-f', deb, 'Depends']).stdout
    # Of alternatives ("systemd | systemd-standalone-sysusers"), the first.
    pkgs = sorted(set(TOOLS) | {real_package(d.split()[0]) for d in deps.split(',') if d.strip()})
    tar = os.path.join(CACHE, '%s-%08x.tar' % (RECIPE, int(hashlib.sha256(' '.join(pkgs).encode()).hexdigest()[:8], 16)))
    if not os.path.exists(tar):
        log('making the Debian 12 root (once): debootstrap with %s' % ', '.join(pkgs))
        os.makedirs(CACHE, exist_ok=True)
        tmp = os.path.join(WORK, 'debootstrap')
        r = subprocess.run(['debootstrap', '--variant=minbase', '--include=' + ','.join(pkgs),
                            'bookworm', tmp, t.mirror_url()], text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            cannot_run('debootstrap failed:\n' + r.stdout[-3000:])
        run(['tar', '-C', tmp, '-cf', tar + '.part', '.'])
        os.rename(tar + '.part', tar)
        shutil.rmtree(tmp)
    root = os.path.join(WORK, 'root')
    os.makedirs(root)
    run(['tar', '-C', root, '-xf', tar])
    return root


def install(root, deb):
    shutil.copy(deb, os.path.join(root, 'tmp'))
    r = run(['chroot', root, 'dpkg', '-i', '/tmp/' + os.path.basename(deb)], check=False)
    assert r.returncode == 0, 'dpkg -i in the root failed:\n' + r.stdout + r.stderr
    assert os.path.lexists(os.path.join(root, 'etc/systemd/system/sockets.target.wants/'
                                       'nsidd.socket')), 'install did not enable nsidd.socket'
    assert 'nsidd:' in open(os.path.join(root, 'etc/passwd')).read(), 'no nsidd user'
    log('installed with dpkg -i: user nsidd made, sockets enabled')


class Container:
    """A booted systemd-nspawn container; commands run in it through nsenter."""

    def __init__(self, root):
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY='1')
        self.console = open(os.path.join(WORK, 'console.log'), 'w')
        self.proc = subprocess.Popen(
            # nspawn's own seccomp filter refuses pidfd_getfd (in no set it allows): let it
            # through, as a host without that filter does; nsidd's unit still filters.
            ['systemd-nspawn', '-D', root, '-b', '--private-network', '--register=no',
             '--keep-unit', '-M', 'nsiddtest', '--console=read-only',
             '--system-call-filter=pidfd_getfd'],
            env=env, stdin=subprocess.DEVNULL, stdout=self.console, stderr=subprocess.STDOUT)
        self.pid = None
        state = 'not asked'
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                cannot_run('systemd-nspawn exited %d:\n%s' % (self.proc.returncode,
                                                             self.console_text()))
            self.pid = self.pid or self.find_init()
            if self.pid:
                state = self.sh('systemctl is-system-running', check=False).stdout.strip()
                if state in ('running', 'degraded'):
                    log('booted: systemd in the container is %s' % state)
                    return
            time.sleep(0.5)
        why = 'PID 1 not found' if not self.pid else 'systemctl is-system-running: %s' % state
        console = self.console_text()
        self.kill()
        cannot_run('the container did not finish booting in 120 s (%s):\n%s' % (why, console))

    def console_text(self):
        self.console.flush()
        return open(self.console.name).read()[-3000:]

    def find_init(self):
        """The container's PID 1: nspawn's child running systemd (read from /proc: a minimal
        Debian has no pgrep)."""
        for pid in filter(str.isdigit, os.listdir('/proc')):
            try:
                with open('/proc/%s/stat' % pid) as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
                if ppid == self.proc.pid and \
                        open('/proc/%s/comm' % pid).read().strip() == 'systemd':
                    return int(pid)
            except (OSError, ValueError, IndexError):
                pass
        return None

    def sh(self, script, check=True, user=None):
        # --root and --wd too: where nspawn itself runs in a chroot, it enters the container
        # with chroot(2), and entering the mount namespace alone does not.
        cmd = ['nsenter', '-t', str(self.pid), '-a', '--root', '--wd', '--',
               '/usr/bin/env', '-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'LANG=C.UTF-8']
        if user:
            cmd += ['runuser', '-u', user, '--']
        return run(cmd + ['/bin/bash', '-c', script], check=check)

    def json(self, script, user=None):
        return json.loads(self.sh(script, user=user).stdout)

    def stop(self):
        """Powers the container off; kills it (its PID 1, which ends every process in it) if
        that takes more than 30 s."""
        if self.proc.poll() is not None:
            return
        begun = time.monotonic()
        self.sh('systemctl poweroff --no-block', check=False)
        try:
            self.proc.wait(30)
            log('container powered off in %.1f s' % (time.monotonic() - begun))
            return
        except subprocess.TimeoutExpired:
            log('container still up after 30 s; killing it. Console:\n' + self.console_text())
        self.kill()

    def kill(self):
        """Kills the container: its PID 1 (which ends every process in it), then nspawn."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()
        self.proc.wait()


def active(c, unit):
    return c.sh('systemctl is-active ' + unit, check=False).stdout.strip()


def main_pid(c):
    return int(c.sh('systemctl show -p MainPID --value nsidd').stdout)


def kernel_table(c):
    """{nsid: name}: `ip netns list` asks the kernel for each name's id (no dump to cut)."""
    return {n['id']: n['name'] for n in c.json('ip -j netns list || echo []') if 'id' in n}


def mirror_table(c):
    return {e['nsid']: e.get('name') for e in c.json('nsidctl -j list')}


def exact(c, what, timeout=30):
    want = None

    def same():
        nonlocal want
        want = kernel_table(c)
        return mirror_table(c) == want

    try:
        t.wait_for(what, same, timeout)
    except AssertionError:
        raise AssertionError('%s: mirror %s\nkernel %s' % (what, mirror_table(c), want)) from None
    log('%s: the mirror equals the kernel (%d ids)' % (what, len(want)))


def nsid_socket_rcvbuf(c):
    """The receive buffer of the netlink socket bound to RTNLGRP_NSID (1 << 27): nsidd-netlink.socket's."""
    sizes = [int(line.split('rb')[1].split(',')[0])
             for line in c.sh('ss -f netlink -m -e').stdout.splitlines()
             if 'rtnl:' in line and 'groups=0x08000000' in line and 'skmem:' in line]
    return max(sizes) if sizes else 0


def boot_checks(c):
    assert active(c, 'nsidd.socket') == 'active', active(c, 'nsidd.socket')
    assert active(c, 'nsidd-netlink.socket') == 'active'
    assert active(c, 'nsidd.service') == 'inactive', active(c, 'nsidd.service')
    status = c.json('nsidctl -j status')
    assert status['entries'] == 0 and active(c, 'nsidd.service') == 'active', status
    log('after boot: sockets active, nsidd not running; the first nsidctl status started it')
    c.sh('for i in $(seq 0 199); do echo "netns add n$i"; echo "netns set n$i auto"; done'
         ' > /tmp/add.batch && ip -batch /tmp/add.batch')
    exact(c, '200 namespaces')
    c.sh('systemctl reload nsidd')
    assert active(c, 'nsidd.service') == 'active'
    log('systemctl reload nsidd: ok')


def bad_config(c):
    c.sh('cp /etc/nsidd/nsidd.conf /tmp/good.conf && echo "rcvbuf = \\"lots\\"" '
         '>> /etc/nsidd/nsidd.conf')
    r = c.sh('systemctl restart nsidd', check=False)
    assert r.returncode != 0, 'a restart with a bad config succeeded'
    time.sleep(4)  # RestartSec=1s: a restart loop would have begun
    restarts = int(c.sh('systemctl show -p NRestarts --value nsidd').stdout)
    status = c.sh('systemctl show -p ExecMainStatus --value nsidd').stdout.strip()
    state = active(c, 'nsidd.service')
    assert restarts == 0 and status == '2' and state == 'failed', (restarts, status, state)
    assert active(c, 'nsidd.socket') == 'active' and active(c, 'nsidd-netlink.socket') == 'active'
    c.sh('cp /tmp/good.conf /etc/nsidd/nsidd.conf && systemctl restart nsidd')
    assert active(c, 'nsidd.service') == 'active'
    exact(c, 'bad config: exit 2, no restart, sockets active; fixed and restarted')


def stopped_meanwhile(c):
    doomed = sorted(k for k, n in kernel_table(c).items() if int(n[1:]) % 10 == 0)
    c.sh('systemctl stop nsidd')
    assert active(c, 'nsidd.service') == 'inactive'
    rb = nsid_socket_rcvbuf(c)
    want_rb = 16 << 20  # ReceiveBuffer=16M (the kernel doubles it)
    assert rb >= want_rb, 'netlink receive buffer after stop: %d < %d' % (rb, want_rb)
    log('stopped; PID 1 holds the netlink socket, receive buffer %d bytes' % rb)
    # No client asks anything until nsidd runs again: only the queued events can start it.
    c.sh('for i in $(seq 0 10 199); do echo "netns del n$i"; done > /tmp/del.batch; '
         'for i in $(seq 200 229); do echo "netns add m$i"; echo "netns set m$i auto"; done'
         ' >> /tmp/del.batch; ip -batch /tmp/del.batch')
    t.wait_for('nsid events to start nsidd', lambda: active(c, 'nsidd.service') == 'active')
    exact(c, 'stopped, %d deleted and 30 added meanwhile, started by the events' % len(doomed))


def killed(c):
    pid = main_pid(c)
    c.sh('systemctl kill -s KILL nsidd')
    t.wait_for('a restart after SIGKILL',
             lambda: active(c, 'nsidd.service') == 'active' and main_pid(c) not in (0, pid))
    c.sh('ip netns add k1 && ip netns set k1 auto')
    exact(c, 'SIGKILL: restarted')
    c.sh('mkdir -p /etc/systemd/system/nsidd.service.d && printf "[Service]\\nWatchdogSec=3s\\n"'
         ' > /etc/systemd/system/nsidd.service.d/watchdog.conf && systemctl daemon-reload && '
         'systemctl restart nsidd')
    pid = main_pid(c)
    c.sh('kill -STOP %d' % pid)
    t.wait_for('the watchdog to restart nsidd',
             lambda: active(c, 'nsidd.service') == 'active' and main_pid(c) not in (0, pid), 60)
    journal = c.sh('journalctl -u nsidd --no-pager -o cat').stdout
    assert 'Watchdog timeout' in journal or 'watchdog timeout' in journal.lower(), journal[-2000:]
    exact(c, 'SIGSTOP: the watchdog fired, restarted')


def journal_metrics_access(c):
    entries = [json.loads(line) for line in
               c.sh('journalctl _SYSTEMD_UNIT=nsidd.service -o json --no-pager')
               .stdout.splitlines() if line.strip()]
    assert entries, 'no journal entries from nsidd'
    doubled = [e for e in entries if isinstance(e.get('CODE_FILE'), list)]
    assert not doubled, 'entries with more than one CODE_FILE: %s' % doubled[:2]
    ids = {e['MESSAGE_ID'] for e in entries if 'MESSAGE_ID' in e}
    assert '9ed77da3a9d849f8aa9bbc9daf4aa134' in ids, ids  # started
    assert '5fae1031d37948bd81ecc6df6a8c4193' in ids, ids  # stopped
    log('journal: %d entries from nsidd, one CODE_FILE each; MESSAGE_IDs %s'
        % (len(entries), sorted(ids)))
    metrics = c.sh('exec 3<>/dev/tcp/127.0.0.1/9477 && printf "GET /metrics HTTP/1.0\\r\\n'
                   'Host: localhost\\r\\n\\r\\n" >&3 && cat <&3').stdout
    assert ' 200 ' in metrics.splitlines()[0] and 'nsidd_entries' in metrics, metrics[:500]
    log('metrics served on 127.0.0.1:9477 (%d lines)' % len(metrics.splitlines()))
    c.sh('useradd -M -G nsidd alice && useradd -M bob')
    listed = c.json('nsidctl -j list', user='alice')
    assert len(listed) == len(kernel_table(c)), listed
    r = c.sh('nsidctl list', user='bob', check=False)
    assert r.returncode != 0 and 'nsidd' in r.stderr, (r.returncode, r.stderr)
    log('alice (group nsidd) lists %d entries; bob is refused: %s'
        % (len(listed), r.stderr.strip().splitlines()[0]))


def fd_holders(c):
    """Under the unit's user, capabilities and syscall filter: a root process outside two
    namespaces keeps a socket created in one and an fd of the other after both are deleted.
    nsidd reads its fd links (CAP_DAC_READ_SEARCH) and copies only the socket: both are
    fd-held, kind socket and kind ns."""
    c.sh('for n in sk nsfd; do ip netns add $n && ip netns set $n auto; done && '
         'ip -n sk link set lo up')
    ids = {n['id'] for n in c.json('ip -j netns list') if n.get('name') in ('sk', 'nsfd')}
    assert len(ids) == 2, ids
    # Named before the mounts go (in whichever mount namespace the service sees them): a
    # namespace no process was ever in is known through its mounts alone.
    t.wait_for('both named', lambda: sum(
        1 for r in c.json('nsidctl -j list')
        if r['nsid'] in ids and r['peer']['cookie'] is not None) == 2, timeout=60)
    # The pid stays through both execs (procps is not in the root: no pgrep).
    c.sh("setsid ip netns exec sk bash -c 'echo $$ > /run/holder.pid; "
         "exec 3<>/dev/udp/127.0.0.1/9; exec 4</run/netns/nsfd; "
         "exec nsenter --net=/proc/1/ns/net sleep 600' </dev/null >/dev/null 2>&1 &")
    t.wait_for('the holder outside both', lambda: c.sh(
        'p=$(cat /run/holder.pid) && '
        '[ "$(readlink /proc/$p/ns/net)" = "$(readlink /proc/1/ns/net)" ]',
        check=False).returncode == 0)
    c.sh('ip netns del sk && ip netns del nsfd')

    def held():
        rows = c.json('nsidctl -j list --state fd-held')
        return len(rows) == 2 and sorted(
            (f['comm'], f['fd'], f['kind']) for r in rows for f in r['peer']['holders']['fds'])
    try:
        fds = t.wait_for('both fd-held', held, timeout=120)
    except AssertionError:
        rows = [r for r in c.json('nsidctl -j list') if r['nsid'] in ids]
        raise AssertionError('not fd-held: %s\nholder: %s\n%s' % (
            rows, c.sh('p=$(cat /run/holder.pid); ls -l /proc/$p/fd /proc/$p/ns/net',
                       check=False).stdout,
            c.sh('journalctl -u nsidd --no-pager -o cat | tail -20').stdout))
    assert fds == [('sleep', 3, 'socket'), ('sleep', 4, 'ns')], fds
    c.sh('kill $(cat /run/holder.pid)')
    t.wait_for('both dead', lambda: not c.json('nsidctl -j list --state fd-held'))
    log('a socket created inside and an nsfs fd, held by a root process: fd-held, found '
        'through fd copies (%s)' % fds)


def upgrade_and_purge(root, deb):
    """In the powered-off root: installing again keeps an edited configuration; purging
    removes the configuration, the units' enablement and the user."""
    conf = os.path.join(root, 'etc/nsidd/nsidd.conf')
    with open(conf, 'a') as f:
        f.write('log-level = "debug"\n')
    r = run(['chroot', root, 'dpkg', '-i', '/tmp/' + os.path.basename(deb)], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert open(conf).read().endswith('log-level = "debug"\n'), 'the edited config was replaced'
    r = run(['chroot', root, 'dpkg', '--purge', 'nsidd'], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    left = [p for p in ('etc/nsidd', 'etc/systemd/system/sockets.target.wants/nsidd.socket',
                        'usr/sbin/nsidd', 'usr/lib/sysusers.d/nsidd.conf')
            if os.path.lexists(os.path.join(root, p))]
    assert not left, 'left after purge: %s' % left
    for db in ('etc/passwd', 'etc/group'):
        assert 'nsidd:' not in open(os.path.join(root, db)).read(), db + ' still has nsidd'
    log('reinstalled: the edited config kept; purged: config, units, user and group gone')


def main():
    for tool in ('dpkg-buildpackage', 'lintian', 'debootstrap', 'systemd-nspawn', 'nsenter'):
        if shutil.which(tool) is None:
            cannot_run(tool + ' is not installed (scripts/setup.sh test installs it)')
    if os.geteuid() != 0:
        cannot_run('needs root (debootstrap, systemd-nspawn)')
    # NSIDD_TEST_DEB: a package already built from this tree (to rerun the checks quickly).
    deb = os.environ.get('NSIDD_TEST_DEB') or build_package()
    root = cached_root(deb)
    install(root, deb)
    c = Container(root)
    try:
        boot_checks(c)
        bad_config(c)
        stopped_meanwhile(c)
        killed(c)
        journal_metrics_access(c)
        fd_holders(c)
    finally:
        c.stop()
    upgrade_and_purge(root, deb)
    log('ok')


try:
    main()
finally:
    shutil.rmtree(WORK, ignore_errors=True)
