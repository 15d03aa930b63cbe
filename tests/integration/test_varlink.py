#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The Varlink API of a real nsidd, through a client written from the public spec: every
method, the standard errors, and hostile input. Every bad request gets an error reply or a
closed connection, never a hang, and the daemon keeps answering."""
import os
import random
import socket
import time

import nsidtest as t

t.sandbox()
t.ip_batch(['netns add v%d' % i for i in range(5)] + ['netns set v%d auto' % i for i in range(5)])
d = t.Daemon('--max-request', '65536')


def ok(reply, what):
    assert reply is not None and 'error' not in reply, '%s: %r' % (what, reply)
    return reply['parameters']


def err(reply, name, what):
    assert reply is not None and reply.get('error') == name, '%s: %r' % (what, reply)
    return reply.get('parameters', {})


# org.varlink.service
info = ok(d.call('org.varlink.service.GetInfo'), 'GetInfo')
assert info['interfaces'] == ['org.varlink.service', 'io.nsidd.Registry'], info
assert info['vendor'] and info['product'] and info['version'] and info['url'], info
desc = ok(d.call('org.varlink.service.GetInterfaceDescription',
                 {'interface': 'io.nsidd.Registry'}), 'GetInterfaceDescription')['description']
src = os.path.join(os.path.dirname(__file__), '../../daemon/io.nsidd.Registry.varlink')
assert desc == open(src).read(), 'description differs from the .varlink file'
err(d.call('org.varlink.service.GetInterfaceDescription', {'interface': 'no.such.Iface'}),
    'org.varlink.service.InterfaceNotFound', 'unknown interface description')

# io.nsidd.Registry
status = ok(d.call('io.nsidd.Registry.GetStatus'), 'GetStatus')
for key in ('version', 'uptime_usec', 'scope', 'tables', 'entries', 'events', 'batches',
            'overruns', 'resyncs', 'last_resync_usec', 'kernel'):
    assert key in status, key
assert status['entries'] == 5 and status['scope'] == 'self', status
assert set(status['kernel']) == {'dump_truncation', 'listen_all_nsid', 'ns_get_id', 'listmount'}
assert set(status['peers']) == {'active', 'mounted', 'stale_mount', 'fd_held', 'pinned',
                                'unknown'}, status
assert sum(status['peers'].values()) == 5 and status['dangling_names'] == [], status
entries = ok(d.call('io.nsidd.Registry.List'), 'List')['entries']
assert sorted(e['nsid'] for e in entries) == list(range(5)), entries
for e in entries:
    assert set(e) == {'nsid', 'current_nsid', 'peer', 'state', 'since', 'leaking_since',
                      'source'}, e
    assert e['state'] in ('active', 'mounted', 'stale_mount', 'fd_held', 'pinned', 'unknown'), e
    assert set(e['peer']) == {'cookie', 'inode', 'names', 'former_names', 'pid', 'holders',
                              'owner'}, e
    assert set(e['peer']['holders']) == {'processes', 'pid', 'comm', 'mounts', 'also_in',
                                         'copies', 'fds'}, e
    assert e['source'] == 'dump' and e['current_nsid'] == e['nsid'], e
ok(d.call('io.nsidd.Registry.List', {'observer': 'self'}), 'List self')
err(d.call('io.nsidd.Registry.List', {'observer': '77'}), 'io.nsidd.Registry.NoSuchObserver',
    'List of an unknown observer')
err(d.call('io.nsidd.Registry.List', {'observer': '../../etc'}),
    'io.nsidd.Registry.NoSuchObserver', 'List of a path')
err(d.call('io.nsidd.Registry.List', {'observer': []}), 'org.varlink.service.InvalidParameter',
    'List with a wrong type')
err(d.call('io.nsidd.Registry.List', {'bogus': 1}), 'org.varlink.service.InvalidParameter',
    'List with an unknown parameter')
# The IDL says ?string: a number is a bad parameter, not an unknown observer.
r = d.call('io.nsidd.Registry.List', {'observer': 0})
err(r, 'org.varlink.service.InvalidParameter', 'List with a number for the observer')
assert r['parameters'] == {'parameter': 'observer'}, r
graph = ok(d.call('io.nsidd.Registry.Graph'), 'Graph')['tables']
assert [g['observer'] for g in graph] == ['self'] and len(graph[0]['entries']) == 5, graph
ok(d.call('io.nsidd.Registry.History', {'limit': 3}), 'History')
err(d.call('io.nsidd.Registry.History', {'limit': -1}), 'org.varlink.service.InvalidParameter',
    'History with a negative limit')
ok(d.call('io.nsidd.Registry.Resync'), 'Resync as root')
ok(d.call('io.nsidd.Registry.Reload'), 'Reload as root')
metrics = ok(d.call('io.nsidd.Registry.GetMetrics'), 'GetMetrics')['text']
assert 'nsidd_entries 5' in metrics and 'nsidd_resyncs_total{reason="manual"} 1' in metrics, metrics
err(d.call('io.nsidd.Registry.Watch'), 'org.varlink.service.ExpectedMore', 'Watch without more')
err(d.call('io.nsidd.Registry.NoSuchMethod'), 'org.varlink.service.MethodNotFound',
    'unknown method')
err(d.call('com.example.Other.Method'), 'org.varlink.service.InterfaceNotFound',
    'unknown interface')

# Watch: a start marker, then the changes of real churn, gap-free.
w = t.Varlink(d.socket)
w.send('io.nsidd.Registry.Watch', {}, more=True)
start = w.receive()
assert start['continues'] and start['parameters']['kind'] == 'resync', start
seq = start['parameters']['seq']
t.ip_batch(['netns add w%d' % i for i in range(20)] + ['netns set w%d auto' % i for i in range(20)]
           + ['netns del w%d' % i for i in range(10)])
seen = []
while len(seen) < 30:
    m = w.receive()
    assert m and m.get('continues'), m
    p = m['parameters']
    assert p['seq'] == seq + 1, (p['seq'], seq)
    seq = p['seq']
    if p['kind'] != 'update':  # identity and state as they become known
        seen.append((p['kind'], p['entry']['nsid'], p['removed']))
assert sum(1 for k, _, r in seen if k == 'new' and not r) == 20, seen
assert sum(1 for k, _, r in seen if k == 'del' and r) == 10, seen
w.close()

# Pipelined calls are answered in order on one connection; oneway calls get no reply.
c = t.Varlink(d.socket)
c.send_raw(b''.join(b'{"method":"io.nsidd.Registry.GetStatus"}\0' for _ in range(50)))
for _ in range(50):
    ok(c.receive(), 'pipelined GetStatus')
c.send('io.nsidd.Registry.GetStatus', oneway=True)
c.send('org.varlink.service.GetInfo')
assert 'interfaces' in ok(c.receive(), 'call after oneway')
# `more` with `oneway` asks for replies and for none: refused, nothing streamed, and the
# connection still answers the next call.
watchers = int(next(
    l for l in d.call('io.nsidd.Registry.GetMetrics')['parameters']['text'].splitlines()
    if l.startswith('nsidd_varlink_watchers ')).split()[1])
c.send('io.nsidd.Registry.Watch', more=True, oneway=True)
c.send('org.varlink.service.GetInfo')
assert 'interfaces' in ok(c.receive(), 'call after Watch with more and oneway')
t.ip_batch(['netns add mo', 'netns set mo auto'])
c.send('org.varlink.service.GetInfo')
assert 'interfaces' in ok(c.receive(), 'no stream after Watch with more and oneway')
assert f'nsidd_varlink_watchers {watchers}' in d.call('io.nsidd.Registry.GetMetrics')[
    'parameters']['text']
t.ip_batch(['netns del mo'])
c.close()


def hostile(payload, what, expect_close=False):
    """Sends payload; the answer must be an error reply or a closed connection, promptly."""
    c = t.Varlink(d.socket, timeout=5)
    try:
        try:
            c.send_raw(payload)
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed while we were still sending: the error reply may still be queued
        try:
            m = c.receive()
        except (ConnectionResetError, BrokenPipeError):
            m = None
        except socket.timeout:
            raise AssertionError('%s: no answer within 5 s' % what)
        assert m is None or m.get('error', '').startswith('org.varlink.service.'), (what, m)
        if expect_close and m is not None:
            try:
                assert c.receive() is None, what
            except ConnectionResetError:
                pass  # closed with our unread bytes in its buffer: a reset is a close
    finally:
        c.close()


rng = random.Random(1)
cases = [
    (b'not json\0', 'not JSON'),
    (b'[1,2,3]\0', 'not an object'),
    (b'"method"\0', 'a string'),
    (b'{}\0', 'no method'),
    (b'{"method":42}\0', 'method not a string'),
    (b'{"method":"NoDot"}\0', 'method without interface'),
    (b'{"method":"io.nsidd.Registry.List","parameters":[]}\0', 'parameters not an object'),
    (b'{"method":"io.nsidd.Registry.List","parameters":{"observer":{"a":1}}}\0', 'bad type'),
    (b'{"method":"io.nsidd.Registry.GetStatus","more":"yes"}\0', 'more not a bool'),
    (b'{"method":"io.nsidd.Registry.GetStatus","parameters":{"x":1}}\0', 'unknown parameter'),
    (b'{"method":"a.B","parameters":' + b'[' * 10000 + b']' * 10000 + b'}\0', 'deep nesting'),
    (b'\xff\xfe\xfd\0', 'invalid UTF-8'),
]
for i in range(200):
    cases.append((bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) + b'\0',
                  'random bytes %d' % i))
    good = b'{"method":"io.nsidd.Registry.List","parameters":{"observer":"self"}}'
    cases.append((good[:rng.randrange(1, len(good))] + b'\0', 'truncated JSON %d' % i))
for payload, what in cases:
    hostile(payload, what)

# A request past --max-request without a terminator: an error, then the connection closes.
hostile(b'{"method":"' + b'x' * (2 << 20), '2 MiB request without terminator', expect_close=True)

# Half-sent requests that end with the client: no effect on anyone else.
for _ in range(100):
    c = t.Varlink(d.socket)
    c.send_raw(b'{"method":"io.nsidd.Reg')
    c.close()

# Hundreds of idle connections do not stop others from being served quickly.
idle = [t.Varlink(d.socket) for _ in range(300)]
before = time.monotonic()
ok(d.call('io.nsidd.Registry.GetStatus'), 'GetStatus with 300 idle clients')
assert time.monotonic() - before < 5.0  # served, not starved (a loaded machine may be slow)
for c in idle:
    c.close()

status = ok(d.call('io.nsidd.Registry.GetStatus'), 'GetStatus after the abuse')
assert status['entries'] == 15, status
rss = d.rss_kib()
t.log('nsidd RSS after hostile clients: %d KiB' % rss)
assert t.SANITIZED or rss < 32 * 1024, rss
d.stop()

# Connection limits: past --max-connections-per-uid, a connection is closed at once; the
# clients already connected, and new ones once there is room, are served.
lim = t.Daemon('--max-connections-per-uid', '5', socket_path='/run/nsidd-lim/io.nsidd.Registry')
held = [t.Varlink(lim.socket) for _ in range(5)]
extra = t.Varlink(lim.socket, timeout=5)
try:
    extra.send('io.nsidd.Registry.GetStatus')
    assert extra.receive() is None, 'a 6th connection was served'
except (ConnectionResetError, BrokenPipeError):
    pass  # closed by nsidd before or while we sent
ok(held[0].call('io.nsidd.Registry.GetStatus'), 'a connection within the limit')
held.pop().close()
time.sleep(0.1)
ok(lim.call('io.nsidd.Registry.GetStatus'), 'a new connection once there is room')
for c in held:
    c.close()
lim.stop()
t.log('ok')
