#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""nsidd's OCI image and DaemonSet, run as a Kubernetes node would run them, with no registry
and no cluster:
 1. the Debian 12 bases are made offline-ready once and cached (image.bases), outside the
    sandbox since debootstrap needs the archive;
 2. in the sandbox (its /run shared, as systemd makes a node's mounts), podman builds the
    image from container/Containerfile with no network;
 3. a node's past: namespaces with ids and a Docker sandbox mount whose process is gone, made
    before nsidd starts, outside any container (for the kube play pass, one made while it
    runs);
 4. the DaemonSet's pod template is run with `podman run` as the kubelet would (host PID and
    network, its host paths and propagation, its user, capabilities and read-only root, the
    init container first), then as a Pod with `podman kube play`. Each must:
    - run nsidd as uid 65532 with exactly the four capabilities, in the host's PID namespace;
    - mirror the node's nsid table exactly, before and after namespaces come and go;
    - call the old sandbox mount stale-mount, held by its path as the node sees it, owned by
      its sandbox; the command `nsidctl leaks` prints, run on the node, frees it;
    - (podman run) after the container is replaced by a new one, as a rolling update does,
      judge it again at the first look with the same leaking-since and owner (the id cache is
      on the node's /run/nsidd);
    - answer nsidctl on the node through the host path of its socket, and the liveness
      probe's command inside the container; serve metrics on the node's address.
The image's size and nsidd's RSS in it are logged (bench/README.md). Anything that keeps a
step from running fails the test with the reason."""
import json
import os
import subprocess
import sys
import urllib.request

import image
import nsidtest as t

if os.environ.get('NSIDD_SANDBOX') != '1':
    work = os.environ.setdefault('NSIDD_IMAGE_WORK', '/var/tmp')
    os.environ['NSIDD_IMAGE_BASES'] = ':'.join(image.bases(work))
t.sandbox(pid=True)
# /run shared, as systemd makes every mount of a node: the mounts made on it later reach the
# container's slave copies.
subprocess.run(['mount', '--make-rshared', '/run'], check=True)
import runtimes as rt  # noqa: E402 (inside the sandbox only)

IMAGE = image.IMAGE
SOCKET = image.SOCKET
NODE_IP = '127.0.0.1'
# Shorter than the defaults, so that a leak is judged within seconds.
TIMING = ['--orphan-grace', '3', '--discovery-interval', '1']
CAPS = {'cap_net_admin': 12, 'cap_net_broadcast': 11, 'cap_sys_ptrace': 19,
        'cap_dac_read_search': 2}


def sandbox_mount(name):
    """A Docker sandbox mount whose process is gone, with an id: a leak made outside nsidd's
    container (returns its path and nsid)."""
    os.makedirs('/run/docker/netns', exist_ok=True)
    path = '/run/docker/netns/' + name
    t.mount_only(path)
    assigner, fd = t.Assigner(), os.open(path, os.O_RDONLY)
    try:
        assigner.send(fd)
        assert assigner.ack() == 0
    finally:
        os.close(fd)
    return path, t.NsidTable().by_path([path])[path]


def check_process(pid):
    """uid 65532, exactly the four capabilities, in the node's PID namespace."""
    status = dict(line.split(':', 1) for line in open('/proc/%d/status' % pid))
    assert status['Uid'].split()[:2] == ['65532', '65532'], status['Uid']
    want = sum(1 << bit for bit in CAPS.values())
    got = {k: int(status[k], 16) for k in ('CapEff', 'CapPrm', 'CapBnd')}
    assert got == {'CapEff': want, 'CapPrm': want, 'CapBnd': want}, (got, hex(want))
    assert os.readlink('/proc/%d/ns/pid' % pid) == os.readlink('/proc/self/ns/pid'), \
        'nsidd is not in the node PID namespace'
    return int(status['VmRSS'].split()[0])


def check_mirror(served, kernel, what):
    """The node's table mirrored exactly, before and after namespaces come and go; a name
    made on the node after nsidd started reaches it (HostToContainer propagation)."""
    got, want = t.settle(served, kernel)
    t.check_equal(got, want, what + ': the node as nsidd found it')
    slug = what.replace(' ', '-')
    t.ip_batch(['netns add %s-%d' % (slug, i) for i in range(20)] +
               ['netns set %s-%d auto' % (slug, i) for i in range(20)] +
               ['netns del %s-%d' % (slug, i) for i in range(0, 20, 3)])
    got, want = t.settle(served, kernel)
    t.check_equal(got, want, what + ': after 20 made and 7 deleted')
    named = kernel.by_name()['%s-1' % slug]
    t.wait_for(what + ': a new name seen', lambda: (t.entries(served).get(named) or {}).get(
        'peer', {}).get('names') == ['%s-1' % slug])


def stale(served, leak, what):
    """The old sandbox mount: stale-mount, held by exactly its node path, owned by its
    sandbox."""
    path, nsid = leak
    e = rt.stale_entry(served, nsid, what + ': the old sandbox stale-mount', 20)
    assert e['peer']['holders']['mounts'] == [path], e
    owner = e['peer']['owner'] or {}
    assert owner.get('runtime') == 'docker' and owner.get('sandbox') == os.path.basename(path), e
    return e


def free(served, leak, what):
    """The command `nsidctl leaks` prints, asked on the node, run there, frees it."""
    path, nsid = leak
    listed = t.nsidctl('-j', 'leaks', socket_path=SOCKET)
    command = {x.get('nsid'): x for x in json.loads(listed.stdout)}[nsid]['command']
    subprocess.run(['sh', '-c', command], check=True)
    t.wait_for(what + ': the leak freed', lambda: nsid not in t.entries(served))
    assert any(x['nsid'] == nsid for x in t.deaths(served))
    t.log('%s: %s stale-mount; `%s` (nsidctl leaks on the node) freed it' % (what, path,
                                                                              command))


def check_running(served, probe, what):
    """The liveness probe's command passes in the container, and `nsidctl leaks` as the
    README has it (`kubectl exec POD -- nsidctl leaks`); metrics on the node's address; the
    user, the capabilities and the PID namespace the pod asks for.
    The commands run where a runtime's exec runs them: in nsidd's mount namespace and root, as
    its user. (Not with `podman exec`: a container made from inside a chroot, as a CI's may
    be, cannot be entered by it, since joining a mount namespace resets the root to the
    namespace's own, which is the machine's, not the container's.)"""
    pid = served.pid_of()
    for command in (probe, ['nsidctl', 'leaks']):
        r = subprocess.run(['nsenter', '-t', str(pid), '-m', '-r', '-w', '-S', '65532', '-G',
                            '65532', '--'] + command, capture_output=True, text=True)
        assert r.returncode == 0, (command, r.stdout, r.stderr, 'in its root: %s' % os.listdir(
            '/proc/%d/root/usr/bin' % pid))
    with urllib.request.urlopen('http://%s:9477/metrics' % NODE_IP, timeout=10) as r:
        assert b'nsidd_peers{' in r.read()
    rss = check_process(served.pid_of())
    t.log('%s: the liveness probe passes; uid 65532, the four capabilities, the node PID '
          'namespace; metrics on %s:9477; nsidd RSS %d KiB' % (what, NODE_IP, rss))


def run_as_daemonset(podman, template, kernel, leak):
    """The pod template's containers with `podman run`, init container first; then replaced
    by a new container, as a rolling update does: the id cache on the node's /run/nsidd keeps
    the leak's age and owner."""
    spec = template['spec']
    probe = spec['containers'][0]['livenessProbe']['exec']['command']
    served = image.start_daemonset(podman, spec, NODE_IP, TIMING, rt.CGROUP_PARENT)
    check_mirror(served, kernel, 'podman run')
    before = stale(served, leak, 'podman run')
    podman('rm', '-f', '-t', '2', 'nsidd')
    served = image.start_daemonset(podman, spec, NODE_IP, TIMING, rt.CGROUP_PARENT)
    after = stale(served, leak, 'podman run, a new container')
    assert (after['leaking_since'], after['peer']['owner']) == \
        (before['leaking_since'], before['peer']['owner']), (before, after)
    t.log('podman run, a new container: stale-mount at its first look, leaking since %s as '
          'before' % after['leaking_since'])
    free(served, leak, 'podman run')
    check_running(served, probe, 'podman run')
    podman('rm', '-f', '-t', '2', 'nsidd')


def kube_play(podman, template, kernel):
    """The pod template as a Pod, with `podman kube play`; the leak is made while it runs (the
    node's new sandbox mount reaches the container: HostToContainer)."""
    import yaml
    os.makedirs('/run/nsidd-test', exist_ok=True)
    manifest, conf = '/run/nsidd-test/pod.yaml', '/run/nsidd-test/containers.conf'
    with open(manifest, 'w') as f:
        yaml.safe_dump(image.kube_pod(template, IMAGE, NODE_IP, TIMING), f)
    with open(conf, 'w') as f:
        f.write('[containers]\npidns = "host"\n')
    t.log('kube play: podman 4.3 lacks hostPID (given by containers.conf), status.hostIP and '
          '$(VAR) (given as the kubelet would), ports with hostNetwork (dropped) and init '
          'containers under restartPolicy Always (OnFailure)')
    existed = os.path.exists('/sys/fs/cgroup/memory/libpod_parent') or \
        os.path.exists('/sys/fs/cgroup/libpod_parent')
    r = subprocess.run(podman.command + ['kube', 'play', manifest], capture_output=True,
                       text=True, env=dict(os.environ, CONTAINERS_CONF=conf))
    pod = podman('pod', 'inspect', '--format', '{{.ID}}', 'nsidd', check=False)
    if pod:
        rt.OWN_CGROUPS.append('/libpod_parent' + ('/' + pod if existed else ''))
    assert r.returncode == 0, 'kube play: %s%s' % (r.stdout, r.stderr)
    name = 'nsidd-' + template['spec']['containers'][0]['name']
    served = image.Served(lambda: int(podman('inspect', '--format', '{{.State.Pid}}', name)))
    served.wait_ready(lambda: podman('logs', name))
    probe = template['spec']['containers'][0]['livenessProbe']['exec']['command']
    leak = sandbox_mount('6a7b8c9d0e1f')
    check_mirror(served, kernel, 'kube play')
    stale(served, leak, 'kube play')
    free(served, leak, 'kube play')
    check_running(served, probe, 'kube play')
    podman('kube', 'down', manifest)


kernel = t.NsidTable()
# The node's past: named namespaces with ids, and a sandbox mount with no process.
t.ip_batch(['netns add old-%d' % i for i in range(10)] +
           ['netns set old-%d auto' % i for i in range(10)])
old_leak = sandbox_mount('0a1b2c3d4e5f')
podman = rt.Podman()
image.build(podman, IMAGE, rt.CGROUP_PARENT)
template = image.pod_template()
run_as_daemonset(podman, template, kernel, old_leak)
kube_play(podman, template, kernel)
t.log('ok')
sys.exit(0)
