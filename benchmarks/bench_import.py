"""What `import wslab` costs against `import websockets`: CPU time and memory, in fresh processes.

    python benchmarks/bench_import.py              # 15 alternating pairs of fresh interpreters
    python benchmarks/bench_import.py --pairs 30

Each repeat starts two fresh interpreters, one after the other (the order
flipped every repeat), each timing its own import with ``time.process_time()``
(CPU time: a shared machine's load barely moves it, where wall time doubles)
and reporting its peak RSS. Target (issue 25): ``import wslab`` within 2x of
``import websockets``, on the median of the per-pair ratios. The lessons'
names load on first use (``wslab/__init__.py``); ``tests/test_exports.py``
checks what ``import wslab`` loads, which no load can change.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _verdict import machine_load, spread, verdict  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Peak RSS as VmHWM: it belongs to the child's memory since exec (getrusage's ru_maxrss survives
# exec and would start from this process's size at the fork). Linux only, like the machine it runs on.
PROBE = ("import re, time, json\n"
         "t = time.process_time()\n"
         "import {module}\n"
         "cpu = time.process_time() - t\n"
         "hwm = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
         "print(json.dumps([cpu, hwm / 1024]))\n")


def measure(module: str) -> tuple[float, float]:
    """(CPU seconds of the import, peak RSS MiB of the whole interpreter) in a fresh process."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    if done.returncode:
        raise RuntimeError(f"import {module} failed: {done.stderr.strip()[-500:]}")
    cpu, rss = json.loads(done.stdout)
    return cpu, rss


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=15)
    args = parser.parse_args(argv)
    got: dict[str, list[tuple[float, float]]] = {"websockets": [], "wslab": []}
    for i in range(args.pairs):
        for module in (("websockets", "wslab") if i % 2 == 0 else ("wslab", "websockets")):
            got[module].append(measure(module))
    print(f"{args.pairs} alternating pairs of fresh interpreters; {machine_load()}")
    for module, rows in got.items():
        print(f"  import {module:<10} CPU ms {spread([c * 1000 for c, _ in rows], '{:.1f}')}   "
              f"peak RSS MiB {spread([r for _, r in rows], '{:.1f}')}")
    cpu_ratios = [a[0] / b[0] for a, b in zip(got["wslab"], got["websockets"])]
    rss_ratios = [a[1] / b[1] for a, b in zip(got["wslab"], got["websockets"])]
    ok = verdict("import wslab / import websockets, CPU time per pair", cpu_ratios, at_most=2.0)
    ok &= verdict("import wslab / import websockets, peak RSS per pair", rss_ratios, at_most=2.0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
