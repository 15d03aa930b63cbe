#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Leak alerts end to end, with the real components: two nsidd instances (this sandbox's
network namespace, and a second one joined to it by a veth pair), one Prometheus (Debian
`prometheus`) scraping both with the shipped rules, one Alertmanager (Debian
`prometheus-alertmanager`) whose webhook receiver is an HTTP server in this test.
- A CNI-style mount whose pod process was killed (an id in the first instance's table) and a
  namespace kept by an fd after `ip netns del` (an id in the second's): NsiddStaleNetnsMounts
  and NsiddNetnsHeldByFd reach the webhook, each with its instance, job, cluster, state and
  severity labels. A Docker sandbox mount leaked before nsidd started (no id anywhere) counts
  too. The instances share this machine, so each also fires for the other's leak, which it
  judges without an id.
- The first instance restarts: NsiddStaleNetnsMounts stays firing throughout, no resolved.
- The fleet recording rules see both hosts: two hosts with leaks, per-host counts.
- Both cleaned up: the resolved notifications arrive, and no host has leaks.
The rules are the shipped file with each `for:` shortened to 2 s and each `keep_firing_for:` to
8 s (nothing else changed), and Prometheus evaluates every second, so the whole run takes about
a minute."""
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import nsidtest as t

t.sandbox()
for tool in ('prometheus', 'prometheus-alertmanager'):
    if shutil.which(tool) is None:
        t.cannot_run(tool + ' not installed (Debian package %s)' % tool)
RULES = os.path.join(os.path.dirname(__file__), '../../conf/prometheus/nsidd.rules.yml')
work = tempfile.mkdtemp(prefix='nsidd-alerts-')
A_METRICS, B_METRICS = '127.0.0.1:19491', '10.77.0.2:19492'
AM, PROM, HOOK = 19493, 19494, 19495

# The second instance's namespace, reachable from here over a veth pair.
subprocess.run(['ip', 'netns', 'add', 'fleetb'], check=True)
for cmd in (['ip', 'link', 'add', 'fa', 'type', 'veth', 'peer', 'name', 'fb', 'netns', 'fleetb'],
            ['ip', 'addr', 'add', '10.77.0.1/24', 'dev', 'fa'], ['ip', 'link', 'set', 'fa', 'up'],
            ['ip', '-n', 'fleetb', 'addr', 'add', '10.77.0.2/24', 'dev', 'fb'],
            ['ip', '-n', 'fleetb', 'link', 'set', 'fb', 'up'],
            ['ip', '-n', 'fleetb', 'link', 'set', 'lo', 'up']):
    subprocess.run(cmd, check=True)
common = ('--discovery-interval', '0.2', '--orphan-grace', '1')
# (The second instance's `ip netns exec` makes its mount namespace now: mounts made after it
# are not copied into it.)
b = t.Daemon('--metrics-listen', B_METRICS, *common, '--id-cache', 'none',
             socket_path='/run/nsidd-test/b', wrap=('ip', 'netns', 'exec', 'fleetb'))
# A leak older than nsidd: a Docker sandbox mount whose container's process is gone.
os.makedirs('/run/docker/netns')
t.mount_only('/run/docker/netns/a1b2c3d4e5f6')
a_args = ('--metrics-listen', A_METRICS, *common, '--id-cache', '/run/nsidd-test/ids-a')
a = t.Daemon(*a_args)

# The webhook receiver: every notification Alertmanager posts.
notifications = []


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        notifications.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(('127.0.0.1', HOOK), Hook)
threading.Thread(target=server.serve_forever, daemon=True).start()

with open(RULES) as f:
    rules = re.sub(r'^(\s+)for: \S+$', r'\1for: 2s', f.read(), flags=re.M)
    rules = re.sub(r'^(\s+)keep_firing_for: \S+$', r'\1keep_firing_for: 8s', rules, flags=re.M)
with open(os.path.join(work, 'rules.yml'), 'w') as f:
    f.write(rules)
with open(os.path.join(work, 'alertmanager.yml'), 'w') as f:
    json.dump({'route': {'receiver': 'hook', 'group_by': ['alertname', 'instance'],
                         'group_wait': '1s', 'group_interval': '1s', 'repeat_interval': '1h'},
               'receivers': [{'name': 'hook', 'webhook_configs': [
                   {'url': 'http://127.0.0.1:%d/' % HOOK, 'send_resolved': True}]}]}, f)
with open(os.path.join(work, 'prometheus.yml'), 'w') as f:
    json.dump({'global': {'scrape_interval': '1s', 'evaluation_interval': '1s'},
               'rule_files': [os.path.join(work, 'rules.yml')],
               'alerting': {'alertmanagers': [
                   {'static_configs': [{'targets': ['127.0.0.1:%d' % AM]}]}]},
               'scrape_configs': [{'job_name': 'nsidd', 'static_configs': [
                   {'targets': [A_METRICS, B_METRICS], 'labels': {'cluster': 'test'}}]}]}, f)
logs = {}


def start(name, args):
    logs[name] = open(os.path.join(work, name + '.log'), 'w+')
    return t.track(subprocess.Popen(args, stdout=logs[name], stderr=subprocess.STDOUT))


def ready(port, name):
    def check():
        try:
            with urllib.request.urlopen('http://127.0.0.1:%d/-/ready' % port, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    try:
        t.wait_for(name + ' ready', check, timeout=30)
    except AssertionError:
        logs[name].seek(0)
        raise AssertionError(name + ' not ready:\n' + logs[name].read()[-3000:])


am = start('alertmanager', ['prometheus-alertmanager',
                            '--config.file=' + os.path.join(work, 'alertmanager.yml'),
                            '--storage.path=' + os.path.join(work, 'am'),
                            '--web.listen-address=127.0.0.1:%d' % AM,
                            '--cluster.listen-address='])
ready(AM, 'alertmanager')
prom = start('prometheus', ['prometheus', '--config.file=' + os.path.join(work, 'prometheus.yml'),
                            '--storage.tsdb.path=' + os.path.join(work, 'tsdb'),
                            '--web.listen-address=127.0.0.1:%d' % PROM,
                            '--rules.alert.resend-delay=1s'])
ready(PROM, 'prometheus')
started = time.monotonic()


def query(expr):
    url = 'http://127.0.0.1:%d/api/v1/query?query=%s' % (PROM, urllib.parse.quote(expr))
    with urllib.request.urlopen(url, timeout=5) as r:
        reply = json.load(r)
    assert reply['status'] == 'success', reply
    return {s['metric'].get('instance', ''): float(s['value'][1]) for s in reply['data']['result']}


t.wait_for('both targets up', lambda: query('up{job="nsidd"}') == {A_METRICS: 1, B_METRICS: 1})

# A stale CNI-style mount on the first instance: its pod process killed.
cni = 'cni-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0'
subprocess.run(['ip', 'netns', 'add', cni], check=True)
subprocess.run(['ip', 'netns', 'set', cni, 'auto'], check=True)
pod = t.track(subprocess.Popen(['ip', 'netns', 'exec', cni, 'sleep', '600']))


def state_in(d, name, state):
    return any(e['state'] == state for e in t.entries(d).values() if name in
               e['peer']['names'] + e['peer']['former_names'])


t.wait_for('the pod active', lambda: state_in(a, cni, 'active'))
pod.kill()
pod.wait()
# A namespace of the second instance's table, kept by an fd here after its name went.
subprocess.run(['ip', 'netns', 'add', 'kept'], check=True)
subprocess.run(['ip', '-n', 'fleetb', 'netns', 'set', 'kept', 'auto'], check=True)
t.wait_for('kept mounted in the second instance', lambda: state_in(b, 'kept', 'mounted'))
fd = os.open('/run/netns/kept', os.O_RDONLY)
subprocess.run(['ip', 'netns', 'del', 'kept'], check=True)
t.wait_for('stale-mount on the first', lambda: state_in(a, cni, 'stale_mount'))
t.wait_for('fd-held on the second', lambda: state_in(b, 'kept', 'fd_held'))


def alerts(status):
    """(alertname, labels) of every alert notified with `status`."""
    return [(x['labels']['alertname'], x['labels']) for n in notifications
            for x in n['alerts'] if x['status'] == status]


def notified(status, name, instance):
    return [l for n, l in alerts(status) if n == name and l.get('instance') == instance]


def expect(status, name, instance, state, severity):
    try:
        got = t.wait_for('%s %s from %s' % (name, status, instance),
                         lambda: notified(status, name, instance), timeout=45)
    except AssertionError:
        raise AssertionError('notifications so far: %s' % alerts(status))
    labels = got[0]
    want = {'alertname': name, 'instance': instance, 'job': 'nsidd', 'cluster': 'test',
            'state': state, 'severity': severity}
    assert labels == want, (labels, want)
    t.log('%s %s at the webhook after %.1f s: %s' % (name, status, time.monotonic() - started,
                                                     labels))


expect('firing', 'NsiddStaleNetnsMounts', A_METRICS, 'stale-mount', 'warning')
expect('firing', 'NsiddNetnsHeldByFd', B_METRICS, 'fd-held', 'warning')
# The old Docker leak counts on the first instance, beside the CNI one.
t.wait_for('both stale mounts counted', lambda: query(
    'nsidd_leaking_namespaces{state="stale-mount"}').get(A_METRICS, 0) >= 2)


def firing(instance):
    with urllib.request.urlopen('http://127.0.0.1:%d/api/v1/alerts' % PROM, timeout=5) as r:
        return any(x['labels'].get('alertname') == 'NsiddStaleNetnsMounts' and
                   x['labels'].get('instance') == instance and x['state'] == 'firing'
                   for x in json.load(r)['data']['alerts'])


# An nsidd restart: the alert stays firing throughout (nsidd judges both leaks again at its
# first look; the rule keeps firing across the missed scrapes), and no resolved is sent.
a.stop()
a = t.Daemon(*a_args)
watched = time.monotonic()
while time.monotonic() - watched < 12:
    assert firing(A_METRICS), 'NsiddStaleNetnsMounts stopped firing during the restart'
    time.sleep(0.25)
assert not notified('resolved', 'NsiddStaleNetnsMounts', A_METRICS), alerts('resolved')
assert query('nsidd_leaking_namespaces{state="stale-mount"}').get(A_METRICS, 0) >= 2
t.log('restart: NsiddStaleNetnsMounts kept firing for 12 s after it, no resolved sent; both '
      'leaks counted again')
# The two instances share this machine's mounts, processes and fds: each sees the other's
# leak too (a namespace it has no id for is judged all the same), and fires for it.
expect('firing', 'NsiddStaleNetnsMounts', B_METRICS, 'stale-mount', 'warning')
expect('firing', 'NsiddNetnsHeldByFd', A_METRICS, 'fd-held', 'warning')
# The fleet rules: two hosts with leaks in the cluster; per host, its leaking namespaces (the
# CNI and the Docker mounts, the fd-held one).
t.wait_for('two hosts with leaks',
           lambda: query('cluster:nsidd_hosts_with_leaks:count') == {'': 2})
t.wait_for('the leaks per host', lambda: all(
    query('instance:nsidd_leaking_peers:sum').get(i, 0) >= 3 for i in (A_METRICS, B_METRICS)))
oldest = query('cluster:nsidd_leak_oldest_seconds:max{state="stale-mount"}')
assert oldest[''] >= 1, oldest
t.log('fleet: 2 hosts with leaks, oldest stale mount %.1f s' % oldest[''])

# Cleaned up: the mount goes, the fd closes; both peers die and the alerts resolve.
subprocess.run(['umount', '/run/netns/' + cni], check=True)
os.unlink('/run/netns/' + cni)
subprocess.run(['umount', '/run/docker/netns/a1b2c3d4e5f6'], check=True)
os.close(fd)
expect('resolved', 'NsiddStaleNetnsMounts', A_METRICS, 'stale-mount', 'warning')
expect('resolved', 'NsiddStaleNetnsMounts', B_METRICS, 'stale-mount', 'warning')
expect('resolved', 'NsiddNetnsHeldByFd', B_METRICS, 'fd-held', 'warning')
expect('resolved', 'NsiddNetnsHeldByFd', A_METRICS, 'fd-held', 'warning')
t.wait_for('no host with leaks', lambda: query('cluster:nsidd_hosts_with_leaks:count') == {'': 0})
took = time.monotonic() - started
t.log('fired and resolved through Prometheus and Alertmanager in %.1f s' % took)
for p in (prom, am):
    p.terminate()
    p.wait()
b.stop()
a.stop()
server.shutdown()
shutil.rmtree(work)
t.log('ok')
