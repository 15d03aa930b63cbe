#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Packaging: the units pass `systemd-analyze verify` silently and score <= 2.3 on the offline
security check; `meson install --destdir` lays out the expected tree; every man page renders;
the Kubernetes manifests parse, and the PrometheusRule has the shipped rules' groups."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), '../..'))
BUILD = os.environ.get('NSIDD_BUILD', os.path.join(SOURCE, 'build'))

for tool in ('systemd-analyze', 'man', 'meson'):
    if not shutil.which(tool):
        print('CANNOT RUN: %s not installed' % tool)
        sys.exit(1)

with tempfile.TemporaryDirectory() as dest:
    subprocess.run(['meson', 'install', '-C', BUILD, '--destdir', dest, '--quiet',
                    '--no-rebuild'], check=True, stdout=subprocess.DEVNULL)
    files = sorted(os.path.relpath(os.path.join(d, f), dest)
                   for d, _, fs in os.walk(dest) for f in fs)
    print('\n'.join(files))
    expected = [r'sbin/nsidd$', r'bin/nsidctl$', r'systemd/system/nsidd\.service$',
                r'systemd/system/nsidd\.socket$', r'systemd/system/nsidd-netlink\.socket$',
                r'sysusers\.d/nsidd\.conf$', r'etc/nsidd/nsidd\.conf$',
                r'man/man8/nsidd\.8$', r'man/man1/nsidctl\.1$', r'man/man5/nsidd\.conf\.5$',
                r'bash-completion/completions/nsidctl$']
    for pattern in expected:
        assert any(re.search(pattern, f) for f in files), 'missing from install: ' + pattern

    units = {os.path.basename(f): os.path.join(dest, f) for f in files
             if '/systemd/system/' in '/' + f}
    # Verify with ExecStart= pointing at the installed binaries of this tree.
    with tempfile.TemporaryDirectory() as unitdir:
        for name, path in units.items():
            text = open(path).read()
            # Exec lines may start with prefixes ("+": full privileges): they stay in front.
            text = re.sub(r'(?m)^(Exec\w+=[-+!@:]*)(\S+)',
                          lambda m: m.group(1) + dest + m.group(2), text)
            open(os.path.join(unitdir, name), 'w').write(text)
        paths = [os.path.join(unitdir, n) for n in sorted(units)]
        r = subprocess.run(['systemd-analyze', 'verify', '--man=no'] + paths,
                           capture_output=True, text=True, cwd=unitdir)
        out = (r.stdout + r.stderr).strip()
        assert r.returncode == 0 and not out, 'systemd-analyze verify: %s' % out
        r = subprocess.run(['systemd-analyze', 'security', '--offline=true',
                            os.path.join(unitdir, 'nsidd.service')],
                           capture_output=True, text=True)
        m = re.search(r'Overall exposure level for nsidd\.service: ([0-9.]+)', r.stdout)
        assert m, r.stdout + r.stderr
        print('exposure', m.group(1))
        # 2.0 before pidfd_getfd (in @debug) was allowed; 2.3 with CAP_DAC_READ_SEARCH, which
        # lets fd links tell nsfs files and sockets from any other file (nothing else is opened).
        assert float(m.group(1)) <= 2.3, m.group(1)

    for page in ('man8/nsidd.8', 'man1/nsidctl.1', 'man5/nsidd.conf.5'):
        path = [os.path.join(dest, f) for f in files if f.endswith(page)][0]
        r = subprocess.run(['man', '-l', '-P', 'cat', path], capture_output=True, text=True,
                           env=dict(os.environ, MANWIDTH='80'))
        assert r.returncode == 0 and 'NAME' in r.stdout and len(r.stdout) > 500, \
            (page, r.stderr)

import yaml  # noqa: E402 (python3-yaml)
kube = os.path.join(SOURCE, 'container/kubernetes')
manifests = {f: [d for d in yaml.safe_load_all(open(os.path.join(kube, f))) if d]
             for f in sorted(os.listdir(kube))}
kinds = sorted(d['kind'] for docs in manifests.values() for d in docs)
assert kinds == ['DaemonSet', 'Namespace', 'PodMonitor', 'PrometheusRule'], kinds
rules = yaml.safe_load(open(os.path.join(SOURCE, 'conf/prometheus/nsidd.rules.yml')))
assert manifests['nsidd-prometheusrule.yaml'][0]['spec']['groups'] == rules['groups'], \
    'container/kubernetes/nsidd-prometheusrule.yaml differs from conf/prometheus/nsidd.rules.yml'
print('ok')
