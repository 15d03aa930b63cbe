#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Monitoring end to end, in a sandbox netns: a live scrape and `nsidctl metrics` pass
`promtool check metrics`; the shipped rules pass `promtool check rules` and `promtool test
rules`; a real Prometheus server on loopback scrapes nsidd every second and, after an overrun
forced with --rcvbuf 4096 and a namespace burst, reports NsiddNetlinkOverruns firing through
its own HTTP API. Everything started here is stopped here, and the run is bounded in time."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

import nsidtest as t

RULES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../conf/prometheus')
for tool in ('promtool', 'prometheus'):
    if not shutil.which(tool):
        t.cannot_run('%s not installed (Debian package prometheus)' % tool)
t.sandbox()


def promtool(*args, stdin=None):
    r = subprocess.run(['promtool'] + list(args), input=stdin, capture_output=True, text=True,
                       cwd=RULES_DIR, timeout=60)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


promtool('check', 'rules', 'nsidd.rules.yml')
promtool('test', 'rules', 'nsidd.rules.test.yml')

METRICS = '127.0.0.1:19477'
d = t.Daemon('--rcvbuf', '4096', '--metrics-listen', METRICS)
scraped = urllib.request.urlopen('http://%s/metrics' % METRICS, timeout=5).read().decode()
promtool('check', 'metrics', stdin=scraped)
text = t.nsidctl('metrics', socket_path=d.socket).stdout
promtool('check', 'metrics', stdin=text)
for name in ('nsidd_build_info', 'nsidd_start_time_seconds', 'nsidd_tables', 'nsidd_entries',
             'nsidd_peers', 'nsidd_nsid_events_total', 'nsidd_batches_total',
             'nsidd_batch_size_events_bucket', 'nsidd_purged_peers_total', 'nsidd_overruns_total',
             'nsidd_resyncs_total', 'nsidd_resync_failures_total',
             'nsidd_resync_duration_seconds_bucket', 'nsidd_last_resync_timestamp_seconds',
             'nsidd_varlink_connections', 'nsidd_varlink_requests_total',
             'nsidd_varlink_denials_total', 'nsidd_varlink_dropped_watchers_total',
             'nsidd_event_read_pauses_total', 'nsidd_netns_limit', 'nsidd_netns'):
    assert re.search(r'(?m)^%s[{ ]' % name, text), 'missing metric ' + name
assert 'nsidd_resyncs_total{reason="startup"} 1' in text, text

work = tempfile.mkdtemp(dir='/run')
rules = open(os.path.join(RULES_DIR, 'nsidd.rules.yml')).read()
# The same rules, with every `for:` cut to 0s so that the test takes seconds, not minutes.
open(os.path.join(work, 'rules.yml'), 'w').write(re.sub(r'(?m)^(\s+for:).*$', r'\1 0s', rules))
open(os.path.join(work, 'prometheus.yml'), 'w').write('''
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [rules.yml]
scrape_configs:
  - job_name: nsidd
    static_configs: [{targets: ["%s"]}]
''' % METRICS)
PROM = '127.0.0.1:19090'
prom_log = open(os.path.join(work, 'prometheus.log'), 'w')
prom = t.track(subprocess.Popen(['prometheus', '--config.file', os.path.join(work, 'prometheus.yml'),
                         '--storage.tsdb.path', os.path.join(work, 'data'),
                         '--web.listen-address', PROM], cwd=work, stdout=prom_log,
                        stderr=prom_log))


def api(path):
    return json.loads(urllib.request.urlopen('http://%s/api/v1/%s' % (PROM, path),
                                             timeout=5).read())['data']


try:
    deadline = time.monotonic() + 60
    while True:
        try:
            up = api('query?query=up')['result']
            if up and up[0]['value'][1] == '1':
                break
        except OSError:
            pass
        assert time.monotonic() < deadline and prom.poll() is None, \
            open(os.path.join(work, 'prometheus.log')).read()[-2000:]
        time.sleep(0.5)
    t.log('prometheus scrapes nsidd')
    firing = [a for a in api('alerts')['alerts'] if a['labels']['alertname'] == 'NsiddNetlinkOverruns']
    assert not firing, firing

    # A burst of deaths: one cleanup run sends hundreds of DELs within milliseconds.
    # A burst of deaths while nsidd is held still: the 8 KiB buffer overruns for certain.
    names = ['o%d' % i for i in range(300)]
    t.ip_batch(['netns add ' + n for n in names] + ['netns set %s auto' % n for n in names])
    d.proc.send_signal(t.signal.SIGSTOP)
    t.ip_batch(['netns del ' + n for n in names])
    time.sleep(1.0)
    d.proc.send_signal(t.signal.SIGCONT)
    deadline = time.monotonic() + 10
    while d.status()['overruns'] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert d.status()['overruns'] >= 1, d.status()
    deadline = time.monotonic() + 60
    while True:
        alerts = [a for a in api('alerts')['alerts']
                  if a['labels']['alertname'] == 'NsiddNetlinkOverruns' and a['state'] == 'firing']
        if alerts:
            break
        assert time.monotonic() < deadline, api('alerts')
        time.sleep(0.5)
    t.log('Prometheus reports firing: %s' % alerts[0]['annotations']['summary'])
finally:
    prom.terminate()
    try:
        prom.wait(15)
    except subprocess.TimeoutExpired:
        prom.kill()
        prom.wait()
d.stop()
t.log('ok')
