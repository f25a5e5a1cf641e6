"""The batched vector env: aggregate env steps/s against N, its step against a bare batched step, memory.

    python scripts/bench_batched.py --num-envs 1 4 16 64 --rounds 5 --seconds 1.5

Speed: synthetic task, B=32, K=4, ``head`` student, default episodes (32 steps, so episode ends, dev
evaluations and autoresets are on the clock). For every N, in alternating rounds of one run:
the batched env (``gym.make_vec(..., vectorization_mode="vector_entry_point")``), a *bare batched
step* on the same env's stacked students and episode data (forward, KD loss and its gradient, the
students' backward, AdamW, through the same library calls as the env: what any training loop of N
students must do, nothing of the env), and one single env. Medians
over rounds. Env steps counted are transitions: the autoreset calls take time but count nothing.

Memory: for every N, a fresh process builds the env, runs two episodes, and reports its peak
resident memory; the teacher outputs it holds once, whatever N, are listed beside.

With ``--count-calls``: the torch operator calls (top-level, from ``torch.profiler``) of one vector env
step and of one bare step, at the first N given: where the env's own time goes at small B.

With ``--baseline-tree PATH`` (a checkout of another commit, e.g. made by ``git worktree add``): the
single env of that tree against the single env of this one, each in a fresh child process per round
(alternating, same kwargs and threads), so a change's effect on one env's speed is measured in one run.

With ``--ppo N``: SB3 PPO (``SharedPairPolicy``) on N sub-envs, the batched env through
``agents.sb3_vec.BatchedVecEnv`` against SB3's ``DummyVecEnv`` of N single envs, in alternating rounds:
what an RL user gains end to end, policy and PPO updates included.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import kd_env  # noqa: F401  (registers the ids)
from agents.sb3 import SharedPairPolicy
from agents.sb3_vec import BatchedVecEnv
from kd_env.config import EnvConfig
from kd_env.distill import kd_loss_and_logit_gradient, normalise_weights

ENV_ID = "kd_env/TeacherSelection-v1"


def env_kwargs(args) -> dict:
    chosen = {} if args.info_level is None else {"info_level": args.info_level}  # an older tree has no info_level
    return {"task": "synthetic", "batch_size": args.batch_size, "device": args.device, **chosen}


class Clock:
    """Wall-clock and CPU time (this process) since it was made; rates per second of each."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def elapsed(self) -> float:
        return time.perf_counter() - self.wall

    def rates(self, count: int) -> tuple[float, float]:
        return count / self.elapsed(), count / (time.process_time() - self.cpu)


def time_vector_env(env, actions: list[np.ndarray], seconds: float) -> tuple[float, float]:
    """Aggregate env steps/s (transitions of all sub-envs) over about ``seconds``: (wall, CPU)."""
    transitions, calls, clock = 0, 0, Clock()
    needs_reset = False
    while clock.elapsed() < seconds:
        _, _, terminated, _, _ = env.step(actions[calls % len(actions)])
        transitions += 0 if needs_reset else env.num_envs
        needs_reset = bool(terminated.any())
        calls += 1
    return clock.rates(transitions)


def time_single_env(env, actions: list[np.ndarray], seconds: float) -> tuple[float, float]:
    """Env steps/s of one single env, its resets on the clock: (wall, CPU)."""
    steps, clock = 0, Clock()
    while clock.elapsed() < seconds:
        _, _, terminated, _, _ = env.step(actions[steps % len(actions)])
        steps += 1
        if terminated:
            env.reset()
    return clock.rates(steps)


def bare_step(env, weights: torch.Tensor, row: int) -> None:
    """One bare batched step on the env's own stacked students and episode batch ``row``, through the
    same library calls as the env's step: forward, KD loss and its gradient, backward, AdamW."""
    core = env.core
    students, episode = core.students, core._episode
    logits, saved = students.forward_for_training(episode.inputs(row))
    teacher_probs = core._soft_targets.index_select(0, episode.rows[row].flatten())
    _, logit_gradient = kd_loss_and_logit_gradient(
        logits.flatten(0, 1), episode.labels[row].flatten(), teacher_probs, weights, core.kd_config, 1.0 / env.batch_size,
    )
    core.optimizer.zero_grad(set_to_none=True)
    students.backward(saved, logit_gradient.view_as(logits))
    core.optimizer.step()
    if logits.is_cuda:  # as the env's step, which hands numpy arrays back, waits for the GPU
        torch.cuda.synchronize()


def time_bare_steps(env, weights: list[torch.Tensor], seconds: float) -> tuple[float, float]:
    """Aggregate steps/s of the bare batched step: (wall, CPU)."""
    steps, clock = 0, Clock()
    while clock.elapsed() < seconds:
        bare_step(env, weights[steps % len(weights)], steps % env.episode_steps)
        steps += 1
    return clock.rates(env.num_envs * steps)


def torch_calls(step, count: int) -> float:
    """Top-level torch operator calls per ``step()`` (views included; the operators they call not counted)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(count):
            step()
    events = [event for event in profiler.events() if event.name.startswith("aten::")]
    return sum(1 for event in events if event.cpu_parent is None or not event.cpu_parent.name.startswith("aten::")) / count


def count_calls(args) -> tuple[float, float]:
    """Torch calls per step of the vector env (steps inside an episode: no reset or dev evaluation) and
    of the bare batched step, at the first N of ``--num-envs``."""
    n = args.num_envs[0]
    env = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", **env_kwargs(args))
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(4)]
    for action in actions:  # warm-up
        env.step(action)
    steps = iter(actions)
    env_calls = torch_calls(lambda: env.step(next(steps)), len(actions))
    weights = normalise_weights(actions[0].reshape(n * args.batch_size, -1)).to(args.device)
    return env_calls, torch_calls(lambda: bare_step(env.unwrapped, weights, 0), 4)


def measure_speed(args) -> dict[str, dict[int, tuple[float, float]]]:
    """Median (wall, CPU) rates per kind (env, bare, single) and N."""
    kwargs = env_kwargs(args)
    vector_envs = {n: gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", **kwargs) for n in args.num_envs}
    bare_envs = {n: gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", **kwargs).unwrapped for n in args.num_envs}
    single = gym.make(ENV_ID, **kwargs)
    single.reset(seed=0)
    single.action_space.seed(0)
    single_actions = [single.action_space.sample() for _ in range(64)]
    actions, weights = {}, {}
    b, k = args.batch_size, single.unwrapped.num_teachers
    for n in args.num_envs:
        vector_envs[n].reset(seed=0)
        bare_envs[n].reset(seed=0)
        vector_envs[n].action_space.seed(0)
        actions[n] = [vector_envs[n].action_space.sample() for _ in range(16)]
        weights[n] = [normalise_weights(a.reshape(n * b, k)).to(args.device) for a in actions[n]]
    rates: dict[str, dict[int, list[tuple[float, float]]]] = {"env": {n: [] for n in args.num_envs}, "bare": {n: [] for n in args.num_envs}}
    rates["single"] = {1: []}
    for round_index in range(args.rounds + 1):  # round 0 warms up and is dropped
        for n in args.num_envs:
            env_rate = time_vector_env(vector_envs[n], actions[n], args.seconds)
            bare_rate = time_bare_steps(bare_envs[n], weights[n], args.seconds)
            if round_index:
                rates["env"][n].append(env_rate)
                rates["bare"][n].append(bare_rate)
        single_rate = time_single_env(single, single_actions, args.seconds)
        if round_index:
            rates["single"][1].append(single_rate)
    return {
        kind: {n: (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)) for n, values in per_n.items()}
        for kind, per_n in rates.items()
    }


def _memory_child(num_envs: int, kwargs: dict, threads: int) -> tuple[int, int]:
    """(peak resident kB, teacher-output bytes) of a process holding one env of ``num_envs``."""
    torch.set_num_threads(threads)
    env = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
    env.reset(seed=0)
    for _ in range(2 * (env.unwrapped.episode_steps + 1)):
        env.step(env.action_space.sample())
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    teacher_bytes = env.unwrapped.core._teacher_logits.nbytes
    return int(status["VmHWM"].split()[0]), teacher_bytes


SINGLE_ENV_CHILD = """
import json, sys, time
import gymnasium as gym, torch
import kd_env
kwargs, seconds, threads = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
env = gym.make(next(iter(kd_env.ENV_IDS)), **kwargs)
env.reset(seed=0)
env.action_space.seed(0)
actions = [env.action_space.sample() for _ in range(64)]
def run(seconds):
    steps, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        terminated = env.step(actions[steps % 64])[2]
        steps += 1
        if terminated:
            env.reset()
    return steps / (time.perf_counter() - wall), steps / (time.process_time() - cpu)
run(min(seconds, 1.0))
print(json.dumps(run(seconds)))
"""


def time_tree_single_env(tree: Path, kwargs: dict, seconds: float, threads: int) -> tuple[float, float]:
    """(wall, CPU) single-env steps/s of the code in ``tree``, in a fresh child process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    output = subprocess.run([sys.executable, "-c", SINGLE_ENV_CHILD, json.dumps(kwargs), str(seconds), str(threads)],
                            cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    return tuple(json.loads(output.strip().splitlines()[-1]))


def baseline_rates(args) -> dict[str, tuple[float, float]]:
    """Median single-env rates of this tree and the baseline tree, in alternating child processes."""
    trees = {"this tree": Path(__file__).resolve().parents[1], "baseline": Path(args.baseline_tree).resolve()}
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            rates[name].append(time_tree_single_env(tree, env_kwargs(args), args.seconds, args.threads))
    return {name: (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)) for name, values in rates.items()}


def measure_memory(args) -> dict[int, tuple[int, int]]:
    context = multiprocessing.get_context("spawn")
    results = {}
    for n in args.num_envs:
        with context.Pool(1) as pool:
            results[n] = pool.apply(_memory_child, (n, env_kwargs(args), args.threads))
    return results


def ppo_rates(args) -> dict[str, float]:
    """Median env steps/s of PPO learning on N sub-envs: batched env vs DummyVecEnv of single envs."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    kwargs, n = env_kwargs(args), args.ppo
    batched = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    venvs = {"batched env": BatchedVecEnv(batched), "DummyVecEnv": DummyVecEnv([lambda: gym.make(ENV_ID, **kwargs)] * n)}
    policy_kwargs = {"obs_shape": batched.unwrapped.obs_shape}
    models = {
        name: PPO(SharedPairPolicy, venv, n_steps=32, batch_size=8 * n, n_epochs=2, seed=0, policy_kwargs=policy_kwargs, device="cpu")
        for name, venv in venvs.items()
    }
    rates: dict[str, list[float]] = {name: [] for name in models}
    for round_index in range(args.rounds + 1):  # round 0 warms up and is dropped
        for name, model in models.items():
            start = time.perf_counter()
            model.learn(total_timesteps=32 * n, reset_num_timesteps=False)
            if round_index:
                rates[name].append(32 * n / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--batch-size", type=int, default=EnvConfig.batch_size)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.5, help="clock time per measurement")
    parser.add_argument("--device", default=EnvConfig.device, help="where the students train (cpu, cuda)")
    parser.add_argument("--info-level", choices=("full", "basic"), help="the env's info_level (default: the env's)")
    parser.add_argument("--skip-memory", action="store_true", help="speed only")
    parser.add_argument("--count-calls", action="store_true", help="only count torch calls per env step and per bare step")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (more than the free cores stalls them)")
    parser.add_argument("--ppo", type=int, default=0, metavar="N", help="only compare PPO on N sub-envs: batched env vs DummyVecEnv")
    parser.add_argument("--baseline-tree", metavar="PATH", help="only compare the single env with the one of this checkout")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = lambda: ", ".join(f"{x:.1f}" for x in os.getloadavg())  # noqa: E731
    if args.count_calls:
        env_calls, bare = count_calls(args)
        print(f"N={args.num_envs[0]}, synthetic, B={args.batch_size}, K=4, head: torch calls per step: env {env_calls:.0f}, bare {bare:.0f}")
        return
    if args.baseline_tree:
        rates = baseline_rates(args)
        print(f"single env, synthetic task, B={args.batch_size}, K=4, head student; {args.threads} torch threads; "
              f"load average {load()}; medians of {args.rounds} alternating child processes of {args.seconds} s")
        for name, (wall, cpu) in rates.items():
            print(f"  {name}: {wall:,.0f} env steps/s (wall clock), {cpu:,.0f} per CPU second")
        ours, base = rates["this tree"], rates["baseline"]
        print(f"  this tree / baseline: {ours[0] / base[0]:.3f} (wall), {ours[1] / base[1]:.3f} (CPU)")
        return
    if args.ppo:
        rates = ppo_rates(args)
        print(f"PPO, {args.ppo} sub-envs, rollouts of 32 steps, 2 epochs; load average {load()}; medians of {args.rounds} rounds")
        for name, rate in rates.items():
            print(f"  {name}: {rate:,.0f} env steps/s")
        print(f"  ratio: {rates['batched env'] / rates['DummyVecEnv']:.2f}")
        return

    speed = measure_speed(args)
    single = speed["single"][1]
    print(f"synthetic task, B={args.batch_size}, K=4, head student on {args.device}; {args.threads} torch threads, {os.cpu_count()} cores, "
          f"load average {load()}; medians of {args.rounds} alternating rounds of {args.seconds} s")
    print(f"single env: {single[0]:,.0f} env steps/s (wall clock), {single[1]:,.0f} per CPU second\n")
    print("Wall clock, then per CPU second of this process (what a core to itself would give):\n")
    print("| N | env steps/s | x single env | bare steps/s | env step / bare step | env steps per CPU s | x single | env / bare (CPU) |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.num_envs:
        (env_wall, env_cpu), (bare_wall, bare_cpu) = speed["env"][n], speed["bare"][n]
        print(f"| {n} | {env_wall:,.0f} | {env_wall / single[0]:.1f} | {bare_wall:,.0f} | {bare_wall / env_wall:.2f} "
              f"| {env_cpu:,.0f} | {env_cpu / single[1]:.1f} | {bare_cpu / env_cpu:.2f} |")

    if args.skip_memory:
        return
    memory = measure_memory(args)
    base = memory[args.num_envs[0]][0]
    print(f"\nteacher outputs held once per process: {memory[args.num_envs[0]][1] / 1024:.0f} KiB")
    print("| N | peak RSS (MiB) | over the first N (MiB) |")
    print("|---|---|---|")
    for n, (peak_kb, _) in memory.items():
        print(f"| {n} | {peak_kb / 1024:.1f} | {(peak_kb - base) / 1024:.1f} |")


if __name__ == "__main__":
    main()
