# SPDX-License-Identifier: LGPL-2.1-or-later
"""nsidd's OCI image (container/Containerfile) and its DaemonSet (container/kubernetes/), for
the test `image`:
- the Debian 12 bases the Containerfile builds from, made offline-ready once with debootstrap
  and cached (NSIDD_TEST_CACHE, as the system test's root): the run stage's with the packages
  its RUN_PACKAGES names, the build stage's with BUILD_PACKAGES too, so `podman build` needs
  no network;
- the DaemonSet's pod template as `podman run` arguments (what the kubelet would ask of the
  runtime) and as a Pod for `podman kube play`."""
import glob
import hashlib
import os
import re
import shutil
import subprocess
import time

import nsidtest as t

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), '../..'))
CONTAINERFILE = os.path.join(SOURCE, 'container/Containerfile')
MANIFEST = os.path.join(SOURCE, 'container/kubernetes/nsidd.yaml')
IMAGE = 'localhost/nsidd:latest'  # as the DaemonSet names it
SOCKET = '/run/nsidd/io.nsidd.Registry'  # on the node: the DaemonSet's hostPath
DEBIAN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
CACHE = os.environ.get('NSIDD_TEST_CACHE', '/var/cache/nsidd-test')
# Version of the bases' recipe: bump it when the recipe changes.
RECIPE = 'bookworm-image-1'
# What debian:bookworm-slim leaves out of a minimal root.
SLIM = ['usr/share/doc/*', 'usr/share/man/*', 'usr/share/info/*', 'usr/share/locale/*',
        'usr/share/lintian/*', 'var/lib/apt/lists/*', 'var/cache/apt/*', 'var/cache/debconf/*-old',
        'var/log/*']


def stage_packages(name):
    """The packages an ARG of the Containerfile names (BUILD_PACKAGES, RUN_PACKAGES)."""
    text = open(CONTAINERFILE).read().replace('\\\n', ' ')
    m = re.search(r'^ARG %s="([^"]*)"' % name, text, re.M)
    assert m, 'no ARG %s in %s' % (name, CONTAINERFILE)
    return m.group(1).split()


def _run(cmd, what):
    r = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        t.cannot_run('%s failed:\n%s' % (what, r.stdout[-3000:]))


def _slim(root):
    for pattern in SLIM:
        for path in glob.glob(os.path.join(root, pattern)):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)


def bases(work):
    """(run base tar, build base tar), made once and cached; needs the network the first time
    (run it outside the sandbox)."""
    run_pkgs, build_pkgs = stage_packages('RUN_PACKAGES'), stage_packages('BUILD_PACKAGES')
    key = hashlib.sha256(' '.join(run_pkgs + ['/'] + build_pkgs).encode()).hexdigest()[:8]
    run_tar = os.path.join(CACHE, '%s-%s-run.tar' % (RECIPE, key))
    build_tar = os.path.join(CACHE, '%s-%s-build.tar' % (RECIPE, key))
    if os.path.exists(run_tar) and os.path.exists(build_tar):
        return run_tar, build_tar
    if shutil.which('debootstrap') is None:
        t.cannot_run('debootstrap not installed')
    t.log('making the image bases (once): debootstrap with %s; then %s' % (
        ', '.join(run_pkgs), ', '.join(build_pkgs)))
    os.makedirs(CACHE, exist_ok=True)
    root = os.path.join(work, 'base')
    _run(['debootstrap', '--variant=minbase', '--include=' + ','.join(run_pkgs), 'bookworm',
          root, t.mirror_url()], 'debootstrap')
    _slim(root)
    _run(['tar', '-C', root, '-cf', run_tar + '.part', '.'], 'tar')
    _run(['chroot', root, 'sh', '-c', 'apt-get update -q && DEBIAN_FRONTEND=noninteractive '
          'apt-get install -y -q --no-install-recommends ' + ' '.join(build_pkgs)],
         'apt-get install in the build base')
    _slim(root)
    _run(['tar', '-C', root, '-cf', build_tar + '.part', '.'], 'tar')
    shutil.rmtree(root)
    os.rename(run_tar + '.part', run_tar)
    os.rename(build_tar + '.part', build_tar)
    return run_tar, build_tar


def build(podman, tag, cgroup_parent):
    """Imports the cached bases and builds the image from the Containerfile, with no network
    (the bases' paths are in NSIDD_IMAGE_BASES); logs its size."""
    run_tar, build_tar = os.environ['NSIDD_IMAGE_BASES'].split(':')
    for tar, name in ((run_tar, 'bookworm-slim'), (build_tar, 'bookworm')):
        # The configuration Debian's own images have (a root tar alone has none).
        podman('import', '--change', 'ENV PATH=' + DEBIAN_PATH, '--change', 'CMD ["bash"]',
               tar, 'localhost/nsidd-test/' + name)
    started = time.monotonic()
    r = subprocess.run(podman.command + [
        'build', '--network=none', '--cgroup-parent', cgroup_parent, '-f', CONTAINERFILE,
        '--build-arg', 'DEBIAN=localhost/nsidd-test/bookworm',
        '--build-arg', 'DEBIAN_SLIM=localhost/nsidd-test/bookworm-slim', '-t', tag, SOURCE],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, 'podman build failed:\n' + r.stdout[-4000:]
    size = int(podman('image', 'inspect', '--format', '{{.Size}}', tag))
    base = int(podman('image', 'inspect', '--format', '{{.Size}}',
                      'localhost/nsidd-test/bookworm-slim'))
    t.log('built %s from container/Containerfile in %.0f s: %.1f MB (the run base %.1f MB, '
          "nsidd's layers %.1f MB)" % (tag, time.monotonic() - started, size / 1e6, base / 1e6,
                                       (size - base) / 1e6))
    return size


class Served:
    """nsidd in a container, reached from the node through the host path of its socket;
    `pid_of()` is its pid (the node's: the pod has hostPID)."""

    def __init__(self, pid_of):
        self.socket, self.pid_of = SOCKET, pid_of

    def call(self, method, parameters=None):
        c = t.Varlink(self.socket)
        try:
            return c.call(method, parameters)
        finally:
            c.close()

    def mirror(self):
        return set(t.entries(self))

    def wait_ready(self, logs):
        try:
            t.wait_for('nsidd answers on ' + SOCKET, lambda: os.path.exists(SOCKET) and
                       self.call('io.nsidd.Registry.GetStatus'), timeout=30)
        except (AssertionError, OSError) as e:
            raise AssertionError('%s; its log:\n%s' % (e, logs())) from None


def start_daemonset(podman, spec, node_ip, extra_args, cgroup_parent):
    """The pod `spec`'s init containers, then its container as `nsidd`, with `podman run`."""
    for init in spec.get('initContainers', []):
        podman('run', '--rm', '--cgroup-parent', cgroup_parent,
               *run_args(spec, init, IMAGE, node_ip))
    podman.run('--name', 'nsidd', *run_args(spec, spec['containers'][0], IMAGE, node_ip),
               *extra_args)
    served = Served(lambda: int(podman('inspect', '--format', '{{.State.Pid}}', 'nsidd')))
    served.wait_ready(lambda: podman('logs', 'nsidd'))
    return served


def pod_template():
    """The DaemonSet's pod template (metadata, spec), as container/kubernetes/nsidd.yaml has it."""
    import yaml  # python3-yaml: only the test needs it
    docs = [d for d in yaml.safe_load_all(open(MANIFEST)) if d]
    ds = [d for d in docs if d['kind'] == 'DaemonSet']
    assert len(ds) == 1, 'one DaemonSet in %s' % MANIFEST
    return ds[0]['spec']['template']


def env_values(container, node_ip):
    """The container's environment as the kubelet gives it (status.hostIP is the node's)."""
    env = {}
    for e in container.get('env', []):
        if 'value' in e:
            env[e['name']] = e['value']
        elif e.get('valueFrom', {}).get('fieldRef', {}).get('fieldPath') == 'status.hostIP':
            env[e['name']] = node_ip
        else:
            raise AssertionError('env %s: the test cannot give it' % e)
    return env


def expand(args, env):
    """$(VAR) in command and args, as the kubelet expands them."""
    return [re.sub(r'\$\(([A-Za-z_][A-Za-z0-9_]*)\)', lambda m: env.get(m.group(1), m.group(0)),
                   a) for a in args]


def run_args(spec, container, image, node_ip):
    """`podman run` arguments that run `container` of the pod `spec` as the kubelet would."""
    sc = container.get('securityContext', {})
    caps = sc.get('capabilities', {})
    volumes = {v['name']: v for v in spec.get('volumes', [])}
    args = ['--pid=host'] if spec.get('hostPID') else []
    args += ['--network=host'] if spec.get('hostNetwork') else []
    args += ['--user', '%d:%d' % (sc['runAsUser'], sc['runAsGroup'])]
    args += ['--cap-drop=' + c.lower() for c in caps.get('drop', [])]
    args += ['--cap-add=' + c for c in caps.get('add', [])]
    args += ['--read-only'] if sc.get('readOnlyRootFilesystem') else []
    args += ['--security-opt=no-new-privileges'] if sc.get('allowPrivilegeEscalation') is False \
        else []
    for m in container.get('volumeMounts', []):
        host = volumes[m['name']]['hostPath']
        if host.get('type') == 'DirectoryOrCreate':
            os.makedirs(host['path'], exist_ok=True)
        opts = ['ro' if m.get('readOnly') else 'rw']
        opts += {'HostToContainer': ['rslave'], 'Bidirectional': ['rshared']}.get(
            m.get('mountPropagation'), ['rprivate'])
        args += ['-v', '%s:%s:%s' % (host['path'], m['mountPath'], ','.join(opts))]
    env = env_values(container, node_ip)
    for k, v in env.items():
        args += ['-e', '%s=%s' % (k, v)]
    command = expand(container.get('command', []), env)
    if command:
        args += ['--entrypoint', command[0]]
    return args + [image] + command[1:] + expand(container.get('args', []), env)


def kube_pod(template, image, node_ip, extra_args):
    """The pod template as a Pod for podman 4.3's `kube play`, with what the kubelet would do
    and that podman 4.3 does not (each logged): env from status.hostIP given as a value and
    $(VAR) expanded in args; containerPort dropped (with hostNetwork, podman 4.3 turns it into
    a port mapping it then refuses); the restart policy OnFailure (podman 4.3 restarts a
    finished init container under Always, podman#16343). hostPID, which podman's kube play
    reads only from 4.5, is given by containers.conf (pidns = "host")."""
    import copy
    pod = {'apiVersion': 'v1', 'kind': 'Pod',
           'metadata': {'name': 'nsidd', 'labels': template['metadata']['labels']},
           'spec': copy.deepcopy(template['spec'])}
    spec = pod['spec']
    spec['restartPolicy'] = 'OnFailure'
    for c in spec.get('initContainers', []) + spec['containers']:
        c['image'] = image
        env = env_values(c, node_ip)
        if 'env' in c:
            c['env'] = [{'name': k, 'value': v} for k, v in env.items()]
        c.pop('ports', None)
        if 'args' in c:
            c['args'] = expand(c['args'], env)
    spec['containers'][0]['args'] = spec['containers'][0].get('args', []) + list(extra_args)
    return pod
