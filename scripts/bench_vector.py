"""Vector envs: aggregate env steps/s with 1 and 2 async workers, and who holds the teacher outputs.

    python scripts/bench_vector.py                                  # speed on synthetic, memory on the default text task
    python scripts/bench_vector.py --memory-task bbc-news --memory-task-options '{"max_train": 1000}'

Speed: synthetic task, B=32, head student, one torch thread per worker; 1- and 2-worker vector envs
step in alternating rounds of one run and medians are reported (scaling efficiency = rate(2) / (2 x
rate(1))). Memory: a text task read from the disk TeacherCache (prepared on first use: minutes), with
1 and N async workers; the cache-file pages each worker maps are read from /proc/PID/smaps, and the
arrays one env holds are listed as memory-mapped or private.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported, for spawned workers too

import argparse
import gc
import json
import logging

import gymnasium as gym
import torch

from kd_env.config import EnvConfig

# scripts/vector_bench.py, beside this script (python puts the script's folder on sys.path)
from vector_bench import ENV_ID, array_census, async_scaling, cache_root_of, teacher_output_arrays, worker_memory

MB = 1 << 20


def report_speed(args) -> None:
    env_kwargs = {"task": "synthetic", "batch_size": args.batch_size}
    rates = async_scaling(env_kwargs, (1, 2), args.steps, args.rounds)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"speed (median of {args.rounds} alternating rounds of {args.steps} vector steps; {os.cpu_count()} cores, load average {load})")
    for n, rate in rates.items():
        print(f"  {n} async env(s): {rate:8.1f} env steps/s")
    print(f"  scaling efficiency with 2 envs: {rates[2] / (2 * rates[1]):.2f}")


def report_memory(args) -> None:
    env_kwargs = {"task": args.memory_task, "teachers": args.memory_teachers, "task_options": args.memory_task_options,
                  "batch_size": args.batch_size}
    root = cache_root_of(env_kwargs)
    env = gym.make(ENV_ID, **env_kwargs)  # prepares the cache if needed, and is the census subject
    env.reset(seed=0)
    env.step(env.action_space.sample())
    census = array_census(env, root)
    teacher_rows = teacher_output_arrays(census)
    private_teacher = sum(nbytes for _, nbytes, mapped in teacher_rows if not mapped)
    print(f"memory: task {args.memory_task}, cache {root}")
    print("  arrays one env holds (largest first; mapped = pages of a cache file, shared between processes):")
    for path, nbytes, mapped in census[: args.census_rows]:
        print(f"    {nbytes / MB:9.3f} MB  {'mapped ' if mapped else 'private'}  {path}")
    print(f"  teacher outputs and arrays computed from them, private per env: {private_teacher / MB:.3f} MB")
    # This process must unmap the cache before the workers are measured: a page it shares would
    # lower the workers' PSS by a share that depends on how many workers there are.
    env.close()
    del env, census, teacher_rows
    gc.collect()
    totals = {}
    for n in (1, args.memory_envs):
        workers = worker_memory(env_kwargs, n, root, args.memory_steps)
        cache_pss = sum(w.cache_pss for w in workers) * 1024
        totals[n] = cache_pss + n * private_teacher
        print(f"  {n} async env(s): cache-file PSS summed over workers {cache_pss / MB:.3f} MB "
              f"(RSS {sum(w.cache_rss for w in workers) / 1024:.3f} MB); "
              f"whole workers: PSS {sum(w.total_pss for w in workers) / 1024:.1f} MB, private {sum(w.total_private for w in workers) / 1024:.1f} MB")
    n = args.memory_envs
    print(f"  teacher-output memory (shared cache PSS + {n} x private copies): 1 env {totals[1] / MB:.3f} MB, "
          f"{n} envs {totals[n] / MB:.3f} MB -> ratio {totals[n] / totals[1]:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="vector steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=EnvConfig.batch_size)
    parser.add_argument("--memory-task", default="twitter-sentiment", help="a text task (its teachers come from the disk cache)")
    parser.add_argument("--memory-task-options", type=json.loads, default={}, help="JSON object of task options")
    parser.add_argument("--memory-teachers", type=json.loads, default=None, help="JSON list of teacher names or specs (default: the named teachers)")
    parser.add_argument("--memory-envs", type=int, default=4)
    parser.add_argument("--memory-steps", type=int, default=400, help="steps before reading memory (>= one episode)")
    parser.add_argument("--census-rows", type=int, default=12)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    if not args.skip_speed:
        report_speed(args)
    if not args.skip_memory:
        report_memory(args)


if __name__ == "__main__":
    main()
