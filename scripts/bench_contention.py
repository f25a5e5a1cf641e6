"""The main job on a quiet machine against the same job on a machine kept busy by a second one.

    python scripts/bench_contention.py [--head-start 60]

Runs ``kd-env compare --preset demo`` (teachers cached first, each run into a fresh folder) three
times: alone; then again while a competitor (another ``kd-env compare --preset demo``, restarted
whenever it ends) has been running for ``--head-start`` seconds; then alone again. Both use the
project's default thread policy (``kd_env.devices.intra_op_threads``: the cores that other work leaves
free). Prints each run's wall time, its CPU time, and the busy run's slowdown per CPU share: the
slowdown, scaled by the cores the busy run could have (cores / 2) over those the quiet runs used.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KD_ENV = [str(Path(sys.executable).with_name("kd-env")), "compare", "--preset", "demo"]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main_job(out: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one main job into ``out``."""
    wall, cpu = time.perf_counter(), children_cpu()
    subprocess.run([*KD_ENV, "--out", str(out), "--logdir", str(out / "runs")], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - wall, children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head-start", type=float, default=60.0, help="seconds the competitor runs before the busy run starts")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        main_job(scratch / "warm-up")  # prepares and caches the teachers
        results = {"quiet": main_job(scratch / "quiet")}
        competitor_out = scratch / "competitor"
        loop = (f"while true; do rm -rf {competitor_out}; "
                f"{' '.join(KD_ENV)} --out {competitor_out} --logdir {competitor_out}/runs >/dev/null 2>&1; done")
        competitor = subprocess.Popen(["bash", "-c", loop], cwd=ROOT, start_new_session=True)
        try:
            time.sleep(args.head_start)
            load = os.getloadavg()[0]
            results["busy"] = main_job(scratch / "busy")
        finally:
            os.killpg(competitor.pid, 15)
            competitor.wait()
        results["quiet again"] = main_job(scratch / "quiet-again")
    quiet = (results["quiet"][0] + results["quiet again"][0]) / 2
    print(f"kd-env compare --preset demo, {cores} cores, the default thread policy; load average {load:.1f} when the busy run started")
    print("| run | wall s | CPU s |")
    print("|---|---|---|")
    for name, (wall, cpu) in results.items():
        print(f"| {name} | {wall:.1f} | {cpu:.1f} |")
    slowdown = results["busy"][0] / quiet
    quiet_cores = sum(results[name][1] for name in ("quiet", "quiet again")) / sum(results[name][0] for name in ("quiet", "quiet again"))
    share = cores / 2  # cores each of the two processes can have
    print(f"busy / quiet: {slowdown:.2f}x wall. The quiet runs kept {quiet_cores:.2f} cores busy; with two processes each "
          f"can have {share:.2f}: per CPU share, {slowdown * min(1.0, share / quiet_cores):.2f}x")


if __name__ == "__main__":
    main()
