"""N seeds of one run learning together: N agents over one distillation core, in one loop.

The seeds of a grid entry share everything but the seed, so their schedules (episode ends, stage
changes, resets) fall on the same steps. ``train_population`` builds one batched env of N sub-envs
(``kd_env.core``) and N runs, each with its own folder, TensorBoard writer, checkpoints and agent
(its own parameters and generators), and drives them with ``agents.stepping.drive``: each round the N
agents act, one batched step serves them all, and each agent observes its part through its own
wrappers. There are no threads: Ctrl-C and SIGTERM stop the one loop, and every run checkpoints.

Each agent's env is a ``PopulationEnv``, a ``gym.Env`` standing for sub-env i: its ``step`` and
``reset`` hand out their part of the population's batched call. Only ``agents.stepping``
agents (``StepwiseAgent``: the rules, ``reinforce``, ``mtkd_rl``) can learn this way; SB3 agents run
their seeds separately.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from agents.base import agent_class
from agents.checkpoints import save_checkpoint
from agents.stepping import StepwiseAgent, drive
from agents.training import DEFAULT_CHECKPOINT_EVERY, TrainConfig, TrainResult, finish_run, sigterm_as_interrupt, start_run
from kd_env.batched_env import BatchedTeacherSelectionEnv, sub_env_infos
from kd_env.errors import UserError

SHARED_ATTRIBUTES = frozenset(
    {"action_mode", "batch_size", "data", "episode_steps", "feature_names", "num_classes", "num_teachers",
     "obs_shape", "task", "teacher_names"}
)
"""The single env's attributes that are the same for every sub-env."""


class PopulationError(RuntimeError):
    """The agents of a population did not make the same call."""


class Population:
    """One batched env serving N agents' envs (``views``): a round's step is one batched step, and a
    reset (asked by every agent, with the same options) one batched reset."""

    def __init__(self, env: BatchedTeacherSelectionEnv, seeds: list[int]) -> None:
        self.env = env
        self.seeds = list(seeds)
        self.views = [PopulationEnv(self, i) for i in range(env.num_envs)]
        self._steps: list[tuple | None] = [None] * env.num_envs
        self._resets: list[tuple | None] = [None] * env.num_envs
        self._reset_call: tuple | None = None

    def step(self, actions: list[np.ndarray]) -> None:
        """The batched step of the round; each view's ``step`` then hands out its part."""
        obs, rewards, terminated, truncated, info = self.env.step(np.stack(actions))
        infos = sub_env_infos(info, self.env.num_envs)
        self._steps = [(obs[i], float(rewards[i]), bool(terminated[i]), bool(truncated[i]), _plain(infos[i]))
                       for i in range(self.env.num_envs)]

    def take_step(self, i: int) -> tuple:
        result, self._steps[i] = self._steps[i], None
        if result is None:
            raise PopulationError(f"sub-env {i} stepped outside the population's loop (agents.stepping.drive)")
        return result

    def take_reset(self, i: int, seed: int | None, options: dict | None) -> tuple:
        """Sub-env i's part of the round's reset: the first view to ask makes the batched reset (with
        every run's seed on a seeded reset); the others must ask for the same."""
        if seed is not None and seed != self.seeds[i]:
            raise PopulationError(f"sub-env {i} reset with seed {seed}, not its run's seed {self.seeds[i]}")
        call = (seed is None, options or {})
        if i == 0:
            obs, info = self.env.reset(seed=None if seed is None else self.seeds, options=options)
            infos = sub_env_infos(info, self.env.num_envs)
            self._resets = [(obs[j], _plain(infos[j])) for j in range(self.env.num_envs)]
            self._reset_call = call
        elif call != self._reset_call or self._resets[i] is None:
            raise PopulationError(f"the population's runs must reset together with the same options; sub-env {i} "
                                  f"asked for {call}, sub-env 0 for {self._reset_call}")
        result, self._resets[i] = self._resets[i], None
        return result


class PopulationEnv(gym.Env):
    """Sub-env i of a population, as a single ``TeacherSelectionEnv`` looks to an agent."""

    metadata = {"render_modes": []}

    def __init__(self, population: Population, index: int) -> None:
        self.population, self.index = population, index
        self.batched = population.env
        self.observation_space = self.batched.single_observation_space
        self.action_space = self.batched.single_action_space
        self._ended = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._ended = False
        return self.population.take_reset(self.index, seed, options)

    def step(self, action):
        if self._ended:  # the batched env would autoreset; a single env refuses
            raise RuntimeError(f"the episode ended after {self.batched.episode_steps} steps; call reset()")
        obs, reward, terminated, truncated, info = self.population.take_step(self.index)
        self._ended = terminated or truncated
        return obs, reward, terminated, truncated, info

    def __getattr__(self, name: str) -> Any:
        if name in SHARED_ATTRIBUTES:
            return getattr(self.batched, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r} (a population's sub-env offers "
                             f"{sorted(SHARED_ATTRIBUTES)} and its own batch, student state and evaluation)")

    @property
    def batch_indices(self) -> np.ndarray:
        return self.batched.batch_indices[self.index]

    @property
    def student(self):
        return self.batched.student(self.index)

    def evaluate(self, split: str = "dev") -> dict[str, float]:
        return {name: float(values[self.index]) for name, values in self.batched.evaluate(split).items()}

    def student_state(self) -> dict[str, dict]:
        return self.batched.student_state(self.index)

    def load_student_state(self, state: dict[str, dict]) -> None:
        self.batched.load_student_state(self.index, state)


def _plain(info: dict[str, Any]) -> dict[str, Any]:
    """Numpy scalars as Python numbers, as the single env reports them."""
    return {key: value.item() if isinstance(value, np.generic) else value for key, value in info.items()}


def learns_in_population(agent: str) -> bool:
    return issubclass(agent_class(agent), StepwiseAgent)


def train_population(configs: list[TrainConfig], callbacks: list | None = None,
                     checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY) -> list[TrainResult | BaseException]:
    """The runs of ``configs`` (one run but for the seed) as one population. Returns each run's result,
    or the error that stopped them (a population stops together)."""
    first = configs[0]
    if not learns_in_population(first.agent):
        raise UserError(f"agent {first.agent!r} does not learn step by step: run its seeds separately")
    if any({**vars(c), "seed": 0} != {**vars(first), "seed": 0} for c in configs):
        raise UserError("a population's runs must share everything but the seed")
    callbacks = callbacks or [None] * len(configs)
    try:  # a bad env or agent setting is every seed's error
        vector_env = gym.make_vec(first.env_id, num_envs=len(configs), vectorization_mode="vector_entry_point", **first.env_kwargs)
        population = Population(vector_env.unwrapped, [config.seed for config in configs])
        runs = [start_run(config, base_env=view) for config, view in zip(configs, population.views)]
    except Exception as error:  # noqa: BLE001 - returned like a failed run's
        return [error] * len(configs)
    bar = tqdm(total=first.total_steps * len(runs), desc=f"{first.agent} x{len(runs)}", disable=not first.progress_bar)
    start = time.perf_counter()

    def on_step(run, callback):
        def step(info):
            bar.update(1)
            if checkpoint_every is not None and run.env.global_step % checkpoint_every == 0:
                save_checkpoint(run.run_dir, run.agent, run.env, time.perf_counter() - start)
            return None if callback is None else callback(info)
        return step

    failure: BaseException | None = None
    try:
        with sigterm_as_interrupt():
            drive([run.agent for run in runs], first.total_steps, [on_step(run, cb) for run, cb in zip(runs, callbacks)], population)
    except Exception as error:  # noqa: BLE001 - every run's error; Ctrl-C and SIGTERM propagate after the checkpoints
        failure = error
    finally:
        bar.close()
        wall_time_s = time.perf_counter() - start
        for run in runs:
            if run.env.global_step > 0:  # as a single run: nothing to keep before the first step
                save_checkpoint(run.run_dir, run.agent, run.env, wall_time_s)
    if failure is not None:
        return [failure] * len(runs)
    results: list[TrainResult | BaseException] = [finish_run(run.config, run.run_dir, run.env, wall_time_s) for run in runs]
    vector_env.close()
    return results
