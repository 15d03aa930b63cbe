#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Docker (Debian 12's docker.io: dockerd 20.10, containerd, runc) in the sandbox, against a
real nsidd. An agent container with the host's sandbox directory as a volume keeps another
container's namespace after `docker rm -f`: stale-mount, owned by the removed container, held
by the agent's copy (named with the agent's process and container), freed by the printed
command. Then runtimes.leak_scenario: running containers are active and owned by their
container, `docker rm -f` records a death with the container id, and the classic leak
(dockerd, containerd and the shim killed, then the container's process) leaves
/run/docker/netns/SANDBOX mounted: stale-mount within grace + one interval, kept across an
nsidd restart, freed by the printed command."""
import json
import os
import subprocess

import nsidtest as t

t.sandbox(pid=True)
import runtimes as rt  # noqa: E402 (inside the sandbox only)

docker = rt.Docker()

# An agent container given the host's sandbox directory as a volume (-v
# /run/docker/netns:/hostnetns) has private copies of the sandbox mounts there: after `docker
# rm -f` of another container, the agent's copy alone keeps that container's namespace.
d = t.Daemon('--orphan-grace', '2', '--discovery-interval', '0.5', '--id-cache', 'none')
victim = docker('run', '-d', '--name', 'victim', rt.IMAGE, 'sleep', '600')
key = docker.inspect(victim)['NetworkSettings']['SandboxKey']
nsid = t.wait_for_value("the victim's nsid", lambda: t.NsidTable().by_path([key])[key])
agent = docker('run', '-d', '--name', 'agent', '-v', '/run/docker/netns:/hostnetns', rt.IMAGE,
               'sleep', '600')
agent_pid = docker.inspect(agent)['State']['Pid']
t.wait_for('the victim active, owned', lambda: (lambda e: e and e['state'] == 'active' and (
    e['peer']['owner'] or {}).get('container') == victim)(t.entries(d).get(nsid)))
docker('rm', '-f', 'victim')
copy = '/proc/%d/root/hostnetns/%s' % (agent_pid, os.path.basename(key))
try:
    e = t.wait_for('the victim stale-mount, held by the agent copy', lambda: (
        lambda e: e if e and e['state'] == 'stale_mount' and
        e['peer']['holders']['mounts'] == [copy] else None)(t.entries(d).get(nsid)), timeout=20)
except AssertionError:
    raise AssertionError(t.entries(d).get(nsid))
held = e['peer']['holders']['copies'][0]
assert e['peer']['owner']['container'] == victim, e
assert held['pid'] == agent_pid and held['owner']['container'] == agent, held
leak = {x.get('nsid'): x for x in json.loads(
    t.nsidctl('-j', 'leaks', socket_path=d.socket).stdout)}[nsid]
assert leak['action'].startswith('held by a copy in the mount namespace of pid %d (sleep, '
                                 'docker:%s)' % (agent_pid, agent[:12])), leak
t.log('after docker rm -f: stale-mount, owner docker:%s, held by %s of agent docker:%s' % (
    victim[:12], copy, agent[:12]))
subprocess.run(['sh', '-c', leak['command']], check=True)
t.wait_for('the victim dead', lambda: nsid not in t.entries(d))
assert any(x['nsid'] == nsid and x['peer']['owner']['container'] == victim for x in t.deaths(d))
t.log('`%s` freed it; its death recorded with container %s' % (leak['command'], victim[:12]))
docker('rm', '-f', 'agent')
d.stop()

rt.leak_scenario(docker,
                 start=lambda name, *extra: docker('run', '-d', '--name', name, *extra, rt.IMAGE,
                                                 'sleep', '600'),
                 remove=lambda name: docker('rm', '-f', name),
                 crash=lambda: rt.kill_named('dockerd', 'containerd', 'containerd-shim'))
t.log('ok')
