"""Env steps per second under random actions: the quick speed check of ``kd-env bench``.

Construction (which prepares or reads the teachers) and resets are outside the clock, so the number is
what an agent's rollouts can reach at most on this machine. The detailed benchmarks are in scripts/.
"""

from __future__ import annotations

import time

import gymnasium as gym

import kd_env  # noqa: F401 - registers the env ids
from kd_env.errors import UserError


def env_throughput(env_id: str, env_kwargs: dict, steps: int, seed: int = 0) -> dict:
    """``{"steps", "seconds", "steps_per_second", "instances_per_second"}`` over ``steps`` env steps."""
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    env = gym.make(env_id, **env_kwargs)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    actions = [env.action_space.sample() for _ in range(min(steps, 64))]
    elapsed = 0.0
    for step in range(steps):
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(actions[step % len(actions)])
        elapsed += time.perf_counter() - start
        if terminated or truncated:
            env.reset()
    batch = env.unwrapped.batch_size
    env.close()
    return {"steps": steps, "seconds": elapsed, "steps_per_second": steps / elapsed, "instances_per_second": steps * batch / elapsed}
