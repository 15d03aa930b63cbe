#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Storm and soak: cycles of COUNT namespaces created with ids and destroyed in one burst, with a
real nsidd and `ip monitor nsid` watching side by side, in a sandbox netns.

After each cycle's creation and after its burst of deletions, the mirror must equal the kernel
(per-id GETNSID probes). Reported per run: events each watcher saw and lost, nsidd's overruns
and resyncs, CPU seconds of each, and nsidd's RSS after every cycle against its baseline.

A bare receive loop (bench/bare_recv: recv and count, nothing else) listens too: it is the
floor, and nsidd's CPU is reported against it, for the creation and the deletion phases.
After each creation, bench/ask_ids asks the kernel once for the id of every namespace created
(RTM_GETNSID by fd, the only way to tell which namespace a new id is): the bare loop plus that is
the floor of any mirror that resolves identities, reported beside nsidd's.

Usage (root): python3 bench/storm.py [--cycles 5] [--count 10000] [--rcvbuf BYTES]
              [--no-monitor] [--together] [--perf create|delete] [-- NSIDD-ARGS...]
  --together: each namespace is created and given its id in one `ip -batch` line pair
              (netns add sN; netns set sN auto), as a container runtime does.
tests/integration/test_soak.py runs a short version of the same storm."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '../tests/integration'))
import nsidtest as t  # noqa: E402

TICK = os.sysconf('SC_CLK_TCK')


def cpu_seconds(pid):
    """CPU time of a live process (all its threads), in seconds: the scheduler's nanosecond
    count where the kernel keeps it (/proc/PID/task/*/schedstat), else utime + stime in ticks."""
    total = 0
    try:
        for task in os.listdir('/proc/%d/task' % pid):
            with open('/proc/%d/task/%s/schedstat' % (pid, task)) as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        total = 0
    if total > 0:
        return total / 1e9
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wakeups(pid):
    """Voluntary context switches of a process's main thread: how often it slept and woke."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('voluntary_ctxt_switches:'):
                return int(line.split()[1])
    return 0


def wait_idle(pid, quiet=1.0, timeout=600):
    """Waits until a process has used no CPU for `quiet` seconds (it drained its queue)."""
    deadline = time.monotonic() + timeout
    last, since = cpu_seconds(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = cpu_seconds(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise AssertionError('pid %d still busy after %ds' % (pid, timeout))


class Monitor:
    """`ip monitor nsid`, its output in a file so that it never blocks on a pipe."""

    def __init__(self):
        self.out = tempfile.TemporaryFile('w+')
        self.proc = t.track(subprocess.Popen(['ip', 'monitor', 'nsid'], stdout=self.out,
                                             stderr=subprocess.STDOUT))
        time.sleep(0.2)  # subscribed

    def seen(self):
        """(NEW lines, DEL lines) printed so far."""
        self.out.flush()
        self.out.seek(0)
        new = dels = 0
        for line in self.out:
            if line.startswith('Deleted nsid '):
                dels += 1
            elif line.startswith('nsid '):
                new += 1
        return new, dels

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Bare:
    """bench/bare_recv: the floor."""

    def __init__(self):
        self.proc = t.track(subprocess.Popen([os.path.join(t.BUILD, 'bench/bare_recv')],
                                             stdout=subprocess.PIPE, text=True))
        assert self.proc.stdout.readline().strip() == 'ready'

    def stop(self):
        """(NEW, DEL, overruns) it received."""
        self.proc.terminate()
        out, _ = self.proc.communicate(10)
        return tuple(int(x) for x in out.split())


class Storm:
    """One nsidd (with the bare loop and ip monitor beside it, if asked) through storms."""

    def __init__(self, nsidd_args, monitor, floor, perf):
        self.kernel = t.NsidTable()
        self.d = t.Daemon(*nsidd_args)
        self.baseline = self.d.rss_kib()
        self.mon = Monitor() if monitor else None
        self.mcpu0 = cpu_seconds(self.mon.proc.pid) if self.mon else 0
        self.bare = Bare() if floor else None
        self.perf = perf
        self.st0 = self.d.status()
        self.rss = []
        self.cpu = {'nsidd_create': 0.0, 'nsidd_delete': 0.0, 'bare_create': 0.0,
                    'bare_delete': 0.0}
        self.asked = 0.0  # bench/ask_ids' CPU, all cycles
        self.woke = {k: 0 for k in self.cpu}
        self.ratios = {'create': [], 'delete': []}  # nsidd / bare loop, per cycle

    def _counters(self):
        """(nsidd CPU, bare CPU, nsidd wakeups, bare wakeups) now."""
        pid = self.d.proc.pid
        if self.bare:
            return (cpu_seconds(pid), cpu_seconds(self.bare.proc.pid), wakeups(pid),
                    wakeups(self.bare.proc.pid))
        return cpu_seconds(pid), 0.0, wakeups(pid), 0

    def phase(self, lines, phase):
        """Runs one `ip -batch` storm. CPU counts the storm itself, until nsidd is idle again;
        the List calls that check the mirror afterwards are not counted."""
        rec = None
        if self.perf == phase:
            rec = subprocess.Popen(['perf', 'record', '-q', '-g', '-p', str(self.d.proc.pid),
                                    '-o', '/tmp/nsidd-%s.perf' % phase],
                                   stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # attached
        before = self._counters()
        t.ip_batch(lines)
        if phase == 'create':
            # Creation ends when every new peer's identity is resolved: the last mount rescan
            # may come up to 2 s after the last event (its delay backs off with its cost), so
            # idleness alone would leave that work to the delete phase. Polled at 4 Hz (a
            # GetStatus costs nsidd well under a millisecond).
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and self.d.status()['peers']['unknown'] > 0:
                time.sleep(0.25)
        wait_idle(self.d.proc.pid, quiet=0.5)
        if rec:
            rec.send_signal(2)
            rec.wait()
        after = self._counters()
        self.cpu['nsidd_' + phase] += after[0] - before[0]
        self.cpu['bare_' + phase] += after[1] - before[1]
        if after[1] > before[1]:
            self.ratios[phase].append((after[0] - before[0]) / (after[1] - before[1]))
        self.woke['nsidd_' + phase] += after[2] - before[2]
        self.woke['bare_' + phase] += after[3] - before[3]

    def cycle(self, c, count, together, log):
        """COUNT namespaces created with ids, then destroyed in one burst; exact after each."""
        names = ['s%d_%d' % (c, i) for i in range(count)]
        if together:
            self.phase([line for n in names for line in ('netns add ' + n,
                                                          'netns set %s auto' % n)], 'create')
        else:
            self.phase(['netns add ' + n for n in names], 'create')
            self.phase(['netns set %s auto' % n for n in names], 'create')
        got, want = t.settle(self.d, self.kernel, timeout=120)
        t.check_equal(got, want, 'cycle %d: %d created' % (c + 1, count))
        assert len(want) == count, len(want)
        if self.bare:
            n, ids, spent = subprocess.run([os.path.join(t.BUILD, 'bench/ask_ids'), '/run/netns'],
                                           check=True, capture_output=True,
                                           text=True).stdout.split()
            assert int(n) == count and int(ids) == count, (n, ids)
            self.asked += float(spent)
        self.phase(['netns del ' + n for n in names], 'delete')
        got, want = t.settle(self.d, self.kernel, timeout=120)
        t.check_equal(got, want, 'cycle %d: %d destroyed in one burst' % (c + 1, count))
        assert not want, want
        self.rss.append(self.d.rss_kib())
        log('cycle %d: RSS %d KiB (baseline %d KiB)' % (c + 1, self.rss[-1], self.baseline))

    def finish(self, cycles, count, elapsed):
        """The results; stops every process."""
        wait_idle(self.d.proc.pid)
        st, st0 = self.d.status(), self.st0
        result = {
            'cycles': cycles, 'count': count, 'expected_events': 2 * cycles * count,
            'nsidd_events': st['events'] - st0['events'],
            'overruns': st['overruns'] - st0['overruns'], 'resyncs': st['resyncs'] - st0['resyncs'],
            'nsidd_cpu': self.cpu['nsidd_create'] + self.cpu['nsidd_delete'],
            'rss_baseline': self.baseline, 'rss': self.rss, 'elapsed': elapsed, 'cpu': self.cpu,
            'wakeups': self.woke, 'ratios': self.ratios, 'ask_ids_cpu': self.asked,
        }
        if self.bare:
            result['bare'] = self.bare.stop()
        if self.mon:
            wait_idle(self.mon.proc.pid)  # let ip monitor print what it still holds
            result['monitor_cpu'] = cpu_seconds(self.mon.proc.pid) - self.mcpu0
            result['monitor_new'], result['monitor_del'] = self.mon.seen()
            self.mon.stop()
        self.d.stop()
        return result


def run(cycles, count, nsidd_args=(), monitor=True, together=False, floor=False, log=t.log,
        perf=None):
    """Runs the storm; returns a dict of results. Raises if the mirror is ever inexact.
    perf: a phase ('create' or 'delete') to record nsidd in with `perf record -g`, into
    /tmp/nsidd-PHASE.perf (sampling costs CPU: that phase's figures are then inflated)."""
    s = Storm(nsidd_args, monitor, floor, perf)
    started = time.monotonic()
    for c in range(cycles):
        s.cycle(c, count, together, log)
    return s.finish(cycles, count, time.monotonic() - started)


def report(r, log=t.log):
    exp = r['expected_events']
    log('%d cycles x %d namespaces, %d nsid events in %.1f s' % (r['cycles'], r['count'], exp,
                                                                r['elapsed']))
    log('  nsidd:      saw %d events (%d lost to %d overruns, recovered by %d resyncs); mirror '
        'exact after every step; CPU %.2f s (storms only, not the checks); RSS baseline %d KiB, after each cycle %s KiB'
        % (r['nsidd_events'], exp - r['nsidd_events'], r['overruns'], r['resyncs'],
           r['nsidd_cpu'], r['rss_baseline'], r['rss']))
    c = r['cpu']
    if 'bare' in r:
        new, dels, lost = r['bare']
        log('  bare loop:  received %d events (%d NEW, %d DEL, %d overruns)'
            % (new + dels, new, dels, lost))
    w = r['wakeups']
    for phase in ('create', 'delete'):
        floor = c['bare_' + phase]
        log('  %s phase: nsidd CPU %.3f s (%d wakeups), bare loop %.3f s (%d wakeups)%s' % (
            phase, c['nsidd_' + phase], w['nsidd_' + phase], floor, w['bare_' + phase],
            ' (nsidd / bare loop = %.1f)' % (c['nsidd_' + phase] / floor) if floor > 0 else ''))
        each = r['ratios'][phase]
        if len(each) > 1:
            log('    per cycle: %s; median %.1f' % (' '.join('%.1f' % x for x in each),
                                                  statistics.median(each)))
    if r['ask_ids_cpu'] > 0 and c['bare_create'] > 0:
        floor = c['bare_create'] + r['ask_ids_cpu']
        log('  identity floor: the bare loop + one RTM_GETNSID per namespace created (bench/ask_ids)'
            ' %.3f s = %.1f x the bare loop; nsidd / that floor = %.1f'
            % (floor, floor / c['bare_create'], c['nsidd_create'] / floor))
    if 'monitor_cpu' in r:
        seen = r['monitor_new'] + r['monitor_del']
        log('  ip monitor: printed %d events (%d NEW, %d DEL), lost %d; CPU %.2f s'
            % (seen, r['monitor_new'], r['monitor_del'], exp - seen, r['monitor_cpu']))
        if r['monitor_cpu'] > 0:
            log('  nsidd CPU / ip monitor CPU = %.3f' % (r['nsidd_cpu'] / r['monitor_cpu']))


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--cycles', type=int, default=5)
    ap.add_argument('--count', type=int, default=10000)
    ap.add_argument('--rcvbuf', type=int)
    ap.add_argument('--no-monitor', action='store_true')
    ap.add_argument('--together', action='store_true')
    ap.add_argument('--perf', choices=('create', 'delete'),
                    help='record nsidd in this phase with perf into /tmp/nsidd-PHASE.perf')
    ap.add_argument('nsidd_args', nargs='*')
    a = ap.parse_args()
    t.sandbox()
    args = (['--rcvbuf', str(a.rcvbuf)] if a.rcvbuf else []) + a.nsidd_args
    report(run(a.cycles, a.count, args, monitor=not a.no_monitor, together=a.together,
               floor=True, perf=a.perf))
