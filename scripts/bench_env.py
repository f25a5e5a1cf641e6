"""Env steps per second, and env.step time against a bare distillation step (same run, same student).

The bare step is what any KD training loop must do anyway: the student's forward on the batch, the KD
loss with the given weights, backward and the optimizer step. The ratio is the environment's overhead
(observation features, reward forward, validation, info), measured in alternating rounds so that
machine noise hits both sides alike.

    python scripts/bench_env.py --batch-size 32 --rounds 5 --steps 2000
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch

import kd_env
from kd_env.config import EnvConfig
from kd_env.distill import kd_loss, normalise_weights


def time_env_steps(env, actions: list[np.ndarray], steps: int) -> float:
    """Seconds per env.step (episode resets excluded from the clock)."""
    elapsed = 0.0
    done = 0
    while done < steps:
        start = time.perf_counter()
        _, _, terminated, _, _ = env.step(actions[done % len(actions)])
        elapsed += time.perf_counter() - start
        done += 1
        if terminated:
            env.reset()
    return elapsed / steps


def time_bare_steps(env, actions: list[np.ndarray], steps: int, interleave: bool = False) -> float:
    """Seconds per bare distillation step on the env's own student, data and batch order.

    It reads the batches the env gathered for its episode (``env._episode``) and the teacher logits
    per batch, as the env does, so both sides pay the same data access. With ``interleave`` the env's
    observation is computed between steps, off the clock: what the same torch calls cost when other
    work runs between them, as it must in any env (they lose their hot caches).
    """
    student, optimizer, episode = env.student, env.optimizer, env._episode
    b, k = env.batch_size, env.num_teachers
    weights = [torch.from_numpy(normalise_weights(a.reshape(b, k))) for a in actions]
    elapsed = 0.0
    for i in range(steps):
        row = i % env.episode_steps
        start = time.perf_counter()
        logits = student(episode.inputs(row))
        teacher_logits = env._teacher_logits[episode.device_indices[row]]
        loss = kd_loss(logits, episode.labels[row], teacher_logits, weights[i % len(weights)], env.kd_config).total.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        elapsed += time.perf_counter() - start
        if interleave:
            env._observation()
    return elapsed / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=EnvConfig.batch_size)
    parser.add_argument("--teachers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2000, help="steps per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reward", default=EnvConfig.reward)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest for tiny students)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    env = gym.make(
        "kd_env/TeacherSelection-v0",
        task="synthetic",
        task_options={"num_teachers": args.teachers},
        batch_size=args.batch_size,
        reward=args.reward,
    ).unwrapped
    env.reset(seed=0)
    actions = [env.action_space.sample() for _ in range(64)]
    time_env_steps(env, actions, 200)  # warm-up
    env_times, bare_times, interleaved_times = [], [], []
    for _ in range(args.rounds):
        env_times.append(time_env_steps(env, actions, args.steps))
        bare_times.append(time_bare_steps(env, actions, args.steps))
        interleaved_times.append(time_bare_steps(env, actions, args.steps, interleave=True))
    env_s, bare_s = statistics.median(env_times), statistics.median(bare_times)
    interleaved_s = statistics.median(interleaved_times)
    print(f"synthetic task, B={args.batch_size}, K={args.teachers}, reward={args.reward}, torch threads={args.threads}")
    print(f"env.step:        {env_s * 1e6:8.1f} us  ->  {1.0 / env_s:8.0f} steps/s (median of {args.rounds} rounds)")
    print(f"bare KD step:    {bare_s * 1e6:8.1f} us  ->  {1.0 / bare_s:8.0f} steps/s")
    print(f"bare KD step, the observation computed between steps (off the clock): {interleaved_s * 1e6:8.1f} us")
    print(f"env / bare ratio: {env_s / bare_s:.3f}")


if __name__ == "__main__":
    main()
