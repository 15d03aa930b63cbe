#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""nsidctl against a real nsidd: output formats, diffing against `ip -j netns list-id`,
privileges, and the exit codes of nsidctl(1) (0 ok, 1 daemon error, 2 usage, 3 unreachable)."""
import json
import os
import subprocess

import nsidtest as t

t.sandbox()
t.ip_batch(['netns add c%d' % i for i in range(8)] + ['netns set c%d auto' % i for i in range(8)])
d = t.Daemon()
sock = d.socket
# Identities follow the ids shortly after start; compare outputs once they are in.
t.wait_for('every peer held by its mount', lambda: all(
    e['state'] == 'mounted' for e in json.loads(t.nsidctl('-j', 'list', socket_path=sock).stdout)))

listed = json.loads(t.nsidctl('-j', 'list', socket_path=sock).stdout)
ip_listed = json.loads(subprocess.run(['ip', '-j', 'netns', 'list-id'], capture_output=True,
                                      text=True, check=True).stdout)
assert sorted(e['nsid'] for e in listed) == sorted(e['nsid'] for e in ip_listed), \
    (listed, ip_listed)
pretty = t.nsidctl('--json=pretty', 'list', socket_path=sock).stdout
assert json.loads(pretty) == listed and '\n  ' in pretty

human = t.nsidctl('list', socket_path=sock).stdout.splitlines()
assert human[0].split()[:3] == ['NSID', 'CURRENT', 'PEER'], human
assert len([l for l in human[1:] if l and l[0].isdigit() and 'listed' not in l]) == 8, human
bare = t.nsidctl('--no-legend', 'list', socket_path=sock).stdout.splitlines()
assert len(bare) == 8 and bare[0].startswith('0 '), bare

status = t.nsidctl('status', socket_path=sock).stdout
assert 'Entries: 8' in status, status
st = json.loads(t.nsidctl('-j', 'status', socket_path=sock).stdout)
assert st['entries'] == 8
graph = json.loads(t.nsidctl('-j', 'graph', socket_path=sock).stdout)
assert graph[0]['observer'] == 'self' and len(graph[0]['entries']) == 8, graph

t.ip_batch(['netns del c0', 'netns del c1'])
got, want = t.settle(d, t.NsidTable())
t.check_equal(got, want, 'after two deaths')
rows = t.nsidctl('--no-legend', 'history', socket_path=sock).stdout.splitlines()
# One cleanup run: the kernel tells the two deaths in either order.
assert sorted(r.split()[1] for r in rows) == ['c0', 'c1'], rows
hist = json.loads(t.nsidctl('-j', 'history', '-n', '1', socket_path=sock).stdout)
assert len(hist) == 1, hist
# The dead are named by the names they had, and spelled as list spells states; -n 1 is the
# last death told.
last = rows[-1].split()[1]
assert hist[0]['state'] == 'mounted' and hist[0]['peer']['former_names'] == [last], (hist, rows)
t.nsidctl('resync', socket_path=sock)
t.nsidctl('reload', socket_path=sock)

# watch: one flushed line per change, readable through a pipe.
w = subprocess.Popen([t.NSIDCTL, '--socket', sock, 'watch'], stdout=subprocess.PIPE, text=True)
try:
    t.time.sleep(0.3)
    t.ip_batch(['netns add wx', 'netns set wx auto'])
    line = w.stdout.readline()
    assert ' new ' in line and '+' in line, line
    # Its name and state follow as an update of the same row.
    nsid = line.split(' nsid ')[1].split()[0]
    while True:
        update = w.stdout.readline()
        assert update, 'the stream ended'
        if ' update ' in update and ' nsid %s peer wx mounted' % nsid in update:
            break
    # Its death shows the state it was last in, as history does (not the unknown of its
    # last moments).
    t.ip_batch(['netns del wx'])
    while True:
        gone = w.stdout.readline()
        assert gone, 'the stream ended'
        if ' - observer self nsid %s ' % nsid in gone:
            break
    assert gone.split()[1] == 'del' and gone.rstrip().endswith(' mounted'), gone
finally:
    w.terminate()
    w.wait()
# --since resumes: the same lines again, from the one after it.
seq = int(line.split()[0])
w = subprocess.Popen([t.NSIDCTL, '--socket', sock, 'watch', '--since', str(seq - 1)],
                     stdout=subprocess.PIPE, text=True)
try:
    again = w.stdout.readline()
    assert again.split()[:2] == line.split()[:2], (again, line)
finally:
    w.terminate()
    w.wait()

# watch goes on across an nsidd restart: it reconnects, says on stderr that the changes
# between the two runs cannot be replayed (JSON: the new start marker, resumed false), and
# prints the new run's changes.
w = subprocess.Popen([t.NSIDCTL, '--socket', sock, '-j', 'watch'], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
try:
    t.time.sleep(0.3)
    t.ip_batch(['netns add wy', 'netns set wy auto'])
    before = json.loads(w.stdout.readline())
    assert before['kind'] == 'new', before
    d.stop()
    d = t.Daemon()
    marker = json.loads(w.stdout.readline())
    assert marker['kind'] == 'resync' and marker['resumed'] is False and \
        marker['seq'] > before['seq'], marker
    t.ip_batch(['netns add wz', 'netns set wz auto'])
    after = json.loads(w.stdout.readline())
    while after['kind'] != 'new':
        after = json.loads(w.stdout.readline())
    assert after['seq'] > marker['seq'], after
finally:
    w.terminate()
    _, err = w.communicate()
assert 'nsidd restarted: the changes after seq' in err and 'cannot be replayed' in err, err
t.log('watch across a restart: %s' % err.strip().splitlines()[-1])

# A reader that is not root reads, but may not resync or reload.
os.chmod(os.path.dirname(sock), 0o755)
os.chmod(sock, 0o666)
nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', t.NSIDCTL,
          '--socket', sock]
r = subprocess.run(nobody + ['list'], capture_output=True, text=True)
assert r.returncode == 0, r.stderr
r = subprocess.run(nobody + ['resync'], capture_output=True, text=True)
assert r.returncode == 1 and 'PermissionDenied' in r.stderr, (r.returncode, r.stderr)
r = subprocess.run(nobody + ['reload'], capture_output=True, text=True)
assert r.returncode == 1 and 'PermissionDenied' in r.stderr, (r.returncode, r.stderr)

# Exit codes.
r = t.nsidctl('list', 'no-such-name', socket_path=sock, check=False)
assert r.returncode == 1 and 'NoSuchObserver' in r.stderr, (r.returncode, r.stderr)
r = t.nsidctl('frobnicate', socket_path=sock, check=False)
assert r.returncode == 2, r.returncode
r = t.nsidctl('--json=wide', 'list', socket_path=sock, check=False)
assert r.returncode == 2, r.returncode
r = t.nsidctl('status', socket_path='/run/nope/none.sock', check=False)
assert r.returncode == 3 and '/run/nope/none.sock' in r.stderr, (r.returncode, r.stderr)
assert t.nsidctl('--version').stdout.strip()

d.stop()
t.log('ok')
