"""RL overhead: wall time of a full distillation run driven by the REINFORCE selector vs by Avg-KD.

Same env (task, student, batch size), same number of distillation steps, same process; rounds
alternate between the agents so machine noise hits both alike; no TensorBoard (the logger costs the
same for every agent). Prints seconds per run and the ratio (target <= 1.10; MTKD-RL reports 1.15).

    python scripts/bench_rl_overhead.py --steps 3000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import torch

import agents
from agents.wrappers import ContinuingStudent

REINFORCE_VARIANTS = {
    "reinforce (episode advantage, paper)": {},
    "reinforce (instance advantage, update every 4)": {"advantage": "instance", "update_every": 4},
}


def run_seconds(name: str, config: dict, env_kwargs: dict, steps: int) -> float:
    env = ContinuingStudent(gym.make("kd_env/TeacherSelection-v1", **env_kwargs))
    agent = agents.make(name, env, seed=0, **config)
    start = time.perf_counter()
    agent.learn(steps)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--env-kwargs", type=json.loads, default={"task": "synthetic"},
                        help='JSON, e.g. \'{"task": "synthetic", "batch_size": 32}\'')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = {"avg_kd": ("avg_kd", {})} | {label: ("reinforce", cfg) for label, cfg in REINFORCE_VARIANTS.items()}
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(args.rounds):
        for label, (name, config) in runs.items():
            times[label].append(run_seconds(name, config, args.env_kwargs, args.steps))
    base = statistics.median(times["avg_kd"])
    print(f"env {args.env_kwargs}, {args.steps} steps, {args.rounds} rounds, median wall time per run:")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"  {label:48s} {median:7.2f} s  {1e3 * median / args.steps:6.3f} ms/step  ratio {median / base:.3f}")


if __name__ == "__main__":
    main()
