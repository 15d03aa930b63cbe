#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Bad configuration gets a clear error and exit 2, never unbounded memory or a silent start:
devices and directories, files over 1 MiB, an empty socket path, huge keys (quoted only in part);
fractional grace periods are accepted."""
import os
import subprocess

import nsidtest as t

t.sandbox()
os.makedirs('/run/nsidd-test', exist_ok=True)


def nsidd(config, *args):
    return subprocess.run([t.NSIDD, '--config', config, '--metrics-listen', 'none',
                           '--id-cache', 'none'] + list(args),
                          capture_output=True, text=True, timeout=20)


def write(text):
    path = '/run/nsidd-test/nsidd.conf'
    with open(path, 'w') as f:
        f.write(text)
    return path


for config, expect in (('/dev/zero', 'not a regular file'), ('/run', 'not a regular file'),
                       ('# ' + 'x' * (2 << 20) + '\n', 'larger than 1 MiB'),
                       ('socket = ""\n', "key 'socket': must be an absolute path"),
                       ('socket = "relative"\n', 'must be an absolute path')):
    if not config.startswith('/'):
        config = write(config)
    r = nsidd(config)
    assert r.returncode == 2, (config, r.returncode, r.stderr)
    assert expect in r.stderr, (config, r.stderr)
    t.log('exit 2, %s' % r.stderr.strip()[:100])

r = nsidd(write('k' * 500000 + ' = 1\n'))
assert r.returncode == 2 and len(r.stderr) < 1000, (r.returncode, len(r.stderr))
t.log('a 500 kB key: exit 2, a %d-byte message' % len(r.stderr))

# A byte order mark before the first key is not part of it.
d = t.Daemon('--id-cache', 'none')
d.stop()
d.args[d.args.index('--config') + 1] = write('\ufeffhistory = 7\n')
d.proc = t.track(subprocess.Popen(d.args, stdout=subprocess.DEVNULL, stderr=d.stderr))
d.wait_ready()
d.stop()
assert d.proc.returncode == 0, d.log()
t.log('a config file that starts with a UTF-8 byte order mark: read')

d = t.Daemon('--orphan-grace', '1.5', '--id-cache', 'none')
assert 'version' in d.status()
d.stop()
t.log('orphan-grace 1.5 accepted')

# A reload says which changed settings apply only after a restart, and logs every failure.
conf = write('log-level = "info"\nrcvbuf = 8388608\n')
d = t.Daemon('--id-cache', 'none')
d.stop()
d.args[d.args.index('--config') + 1] = conf
d.proc = t.track(subprocess.Popen(d.args, stdout=subprocess.DEVNULL, stderr=d.stderr))
d.wait_ready()
write('log-level = "debug"\nrcvbuf = 4194304\n')
r = d.call('io.nsidd.Registry.Reload')
assert r['parameters'] == {'restart_needed': ['rcvbuf']}, r
assert 'apply only after a restart: rcvbuf' in d.log(), d.log()
write('bogus-key = 1\n')
r = d.call('io.nsidd.Registry.Reload')
assert r.get('error') == 'io.nsidd.Registry.InvalidConfiguration', r
assert 'Failed to reload the configuration' in d.log(), d.log()
d.stop()
t.log('reload: restart_needed ["rcvbuf"]; a failed reload over Varlink is logged')
t.log('ok')
