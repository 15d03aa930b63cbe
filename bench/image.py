#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""nsidd's OCI image as the DaemonSet runs it, at N namespaces with ids, in a sandbox: the
image's size, and nsidd's RSS in its container when ready, after three discovery passes at the
default interval (10 s), and after serving `nsidctl -j list` through the socket's host path.
The image is built as the test `image` builds it (container/Containerfile on the cached Debian
12 bases, with podman, no network). Usage (root): python3 bench/image.py [N]  (default 10000)"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '../tests/integration'))
import image  # noqa: E402
import nsidtest as t  # noqa: E402

if os.environ.get('NSIDD_SANDBOX') != '1':
    os.environ['NSIDD_IMAGE_BASES'] = ':'.join(image.bases('/var/tmp'))
t.sandbox(pid=True)
subprocess.run(['mount', '--make-rshared', '/run'], check=True)
import runtimes as rt  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
t.ip_batch(['netns add m%d' % i for i in range(n)] + ['netns set m%d auto' % i for i in range(n)])
podman = rt.Podman()
size = image.build(podman, image.IMAGE, rt.CGROUP_PARENT)
served = image.start_daemonset(podman, image.pod_template()['spec'], '127.0.0.1', [],
                               rt.CGROUP_PARENT)
kernel = t.NsidTable()
got, want = t.settle(served, kernel, timeout=60)
t.check_equal(got, want, 'N=%d' % n)


def rss():
    with open('/proc/%d/status' % served.pid_of()) as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmRSS:'))


ready = rss()
time.sleep(31)
passes = rss()
started = time.monotonic()
listed = json.loads(t.nsidctl('-j', 'list', socket_path=image.SOCKET).stdout)
took = time.monotonic() - started
print('image %.1f MB; N=%d: nsidd RSS %d KiB when the mirror is exact, %d KiB after three '
      'discovery passes, %d KiB after nsidctl -j list (%d entries in %.0f ms)' % (
          size / 1e6, n, ready, passes, rss(), len(listed), took * 1000), flush=True)
podman('rm', '-f', '-t', '2', 'nsidd')
