#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The fd search on a busy host: PROCS processes (default 5000), each holding FDS open fds
(default 50: /dev/null, pipes, sockets and regular files, the mix of a real host), then
build/bench/bench_holders times one search of every /proc/PID/fd and the owner parse.
Usage (root): python3 bench/holders.py [PROCS] [FDS]"""
import os
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '../tests/integration'))
import nsidtest as t  # noqa: E402

procs = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
fds = int(sys.argv[2]) if len(sys.argv) > 2 else 50
t.sandbox()
work = tempfile.mkdtemp()
children = []
for i in range(procs):
    pid = os.fork()
    if pid == 0:
        keep = []
        for k in range(fds):
            kind = k % 5
            if kind == 0:
                keep.append(os.open('/dev/null', os.O_RDONLY))
            elif kind == 1:
                keep.extend(os.pipe())
            elif kind == 2:
                keep.append(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
            else:
                keep.append(os.open(os.path.join(work, 'f%d' % (k % 7)),
                                    os.O_RDONLY | os.O_CREAT))
        signal.pause()
        os._exit(0)
    children.append(pid)
try:
    subprocess.run((os.environ.get('NSIDD_BENCH_WRAP', '').split() or []) +
                   [os.path.join(t.BUILD, 'bench/bench_holders'), '--benchmark_min_time=1'] + sys.argv[3:],
                   check=True)
finally:
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
