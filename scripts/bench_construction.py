"""Default env construction time from a warm cache, each in a fresh Python process.

Reports ``gym.make("kd_env/TeacherSelection-v1")`` (no arguments) alone and the whole process
(interpreter start, imports, construction). Run it once before timing, or it times teacher preparation.

    python scripts/bench_construction.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CHILD = """
import json, time
start = time.perf_counter()
import gymnasium as gym
import kd_env
imported = time.perf_counter()
env = gym.make("kd_env/TeacherSelection-v1", **json.loads({kwargs!r}))
built = time.perf_counter()
env.reset(seed=0)
print(json.dumps({{"import_s": imported - start, "make_s": built - imported, "reset_s": time.perf_counter() - built}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kwargs", default="{}", help="JSON env kwargs (default: none, the default env)")
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD.format(kwargs=args.kwargs)], check=True, capture_output=True, text=True)
        run = json.loads(out.stdout.strip().splitlines()[-1])
        run["process_s"] = time.perf_counter() - start
        runs.append(run)
    for key in ("make_s", "import_s", "reset_s", "process_s"):
        values = [r[key] for r in runs]
        print(f"{key:10s} median {statistics.median(values):6.2f} s   (runs: {', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
