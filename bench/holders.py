#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The fd search on a busy host: PROCS processes (default 5000), each holding FDS open fds
(default 50: /dev/null, pipes, sockets and regular files, the mix of a real host), then
build/bench/bench_holders times one search of every /proc/PID/fd and the owner parse.
Usage (root): python3 bench/holders.py [PROCS] [FDS]"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '../tests/integration'))
import nsidtest as t  # noqa: E402

procs = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
fds = int(sys.argv[2]) if len(sys.argv) > 2 else 50
t.sandbox()
children = t.busy_host(procs, fds)
try:
    subprocess.run((os.environ.get('NSIDD_BENCH_WRAP', '').split() or []) +
                   [os.path.join(t.BUILD, 'bench/bench_holders'), '--benchmark_min_time=1'] + sys.argv[3:],
                   check=True)
finally:
    t.end_busy_host(children)
