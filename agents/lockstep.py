"""N single-env runs over one batched env: each agent learns in its own thread on a ``SubEnv``.

Agents own their loops (``Agent.learn`` drives its env), so a batched env cannot simply be handed to
N of them. Here each agent gets a ``SubEnv``, a ``gym.Env`` that stands for sub-env i of a
``BatchedTeacherSelectionEnv``: its ``step`` and ``reset`` wait at a barrier until all N agents have
made the same call, then one batched call serves them all. The agents' own code runs unchanged, so a
lockstep run gives the records of N separate runs (up to the batched env's float tolerance) as long
as every agent

* makes the same sequence of ``step`` and ``reset`` calls (true of N seeds of one grid entry: their
  schedules depend on step counts alone), and
* draws random numbers only from generators of its own (``Agent.runs_in_lockstep``): N threads share
  torch's and numpy's global generators, in no fixed order.

Agents are built one after the other in the calling thread (``agents.training.start_run``); only
``learn`` runs in threads, and the batched call runs while all N wait, so nothing else touches the
students then. A run that raises, or stops early, releases the others with a ``LockstepError``.
"""

from __future__ import annotations

import threading
from typing import Any

import gymnasium as gym
import numpy as np

from agents.base import agent_class
from agents.training import StartedRun, TrainConfig, TrainResult, start_run
from kd_env.batched_env import BatchedTeacherSelectionEnv, sub_env_infos

SHARED_ATTRIBUTES = frozenset(
    {"action_mode", "batch_size", "data", "episode_steps", "feature_names", "num_classes", "num_teachers",
     "obs_shape", "task", "teacher_names"}
)
"""The single env's attributes that are the same for every sub-env (the template env's)."""


class LockstepError(RuntimeError):
    """The N callers did not make the same call, or one of them failed."""


class Lockstep:
    """Gathers one call per sub-env, runs them as one batched call, hands each its part."""

    def __init__(self, env: BatchedTeacherSelectionEnv) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self._calls: list[tuple[str, Any]] = [("", None)] * self.num_envs
        self._results: list[Any] = [None] * self.num_envs
        self._arrived, self._round, self._stopped = 0, 0, ""
        self._condition = threading.Condition()
        self.sub_envs = [SubEnv(self, i) for i in range(self.num_envs)]

    def call(self, i: int, kind: str, payload: Any) -> Any:
        """Sub-env i's ``kind`` call (``step`` or ``reset``); returns once all N have been served."""
        with self._condition:
            if self._stopped:
                raise LockstepError(f"no more lockstep calls: {self._stopped}")
            self._calls[i] = (kind, payload)
            self._arrived += 1
            if self._arrived == self.num_envs:
                self._results = self._run_calls()
                self._arrived, self._round = 0, self._round + 1
                self._condition.notify_all()
            else:
                this_round = self._round
                self._condition.wait_for(lambda: self._round != this_round or self._stopped)
                if self._round == this_round:
                    raise LockstepError(f"this run cannot go on alone: {self._stopped}")
            result = self._results[i]
        if isinstance(result, BaseException):
            raise result
        return result

    def leave(self, i: int, reason: str) -> None:
        """Run i makes no more calls (it ended or failed): any call still waiting, or made later,
        raises ``LockstepError``. Runs that end together leave after their last call was served."""
        with self._condition:
            self._stopped = self._stopped or f"run {i} {reason}"
            self._condition.notify_all()

    def _run_calls(self) -> list[Any]:
        """The batched call, or the error every caller raises."""
        try:
            kinds = [kind for kind, _ in self._calls]
            if len(set(kinds)) != 1:
                raise LockstepError(f"the sub-envs' calls differ ({kinds}): lockstep runs must make the same calls")
            return self._step() if kinds[0] == "step" else self._reset()
        except Exception as error:  # noqa: BLE001 - every caller raises it
            return [error] * self.num_envs

    def _step(self) -> list[tuple]:
        actions = np.stack([payload for _, payload in self._calls])
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        infos = sub_env_infos(info, self.num_envs)
        return [(obs[i], float(rewards[i]), bool(terminated[i]), bool(truncated[i]), _plain(infos[i])) for i in range(self.num_envs)]

    def _reset(self) -> list[tuple]:
        options = [payload[1] or {} for _, payload in self._calls]
        if any(option != options[0] for option in options):
            raise LockstepError(f"the sub-envs reset with different options {options}")
        obs, info = self.env.reset(seed=[payload[0] for _, payload in self._calls], options=options[0])
        infos = sub_env_infos(info, self.num_envs)
        return [(obs[i], _plain(infos[i])) for i in range(self.num_envs)]


class SubEnv(gym.Env):
    """Sub-env i of a lockstep batched env, as a single ``TeacherSelectionEnv`` looks to an agent."""

    metadata = {"render_modes": []}

    def __init__(self, lockstep: Lockstep, index: int) -> None:
        self.lockstep, self.index = lockstep, index
        self.batched = lockstep.env
        self.observation_space = self.batched.single_observation_space
        self.action_space = self.batched.single_action_space
        self._ended = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, info = self.lockstep.call(self.index, "reset", (seed, options))
        self._ended = False
        return obs, info

    def step(self, action):
        if self._ended:  # the batched env would autoreset; a single env refuses
            raise RuntimeError(f"the episode ended after {self.batched.episode_steps} steps; call reset()")
        obs, reward, terminated, truncated, info = self.lockstep.call(self.index, "step", np.asarray(action))
        self._ended = terminated or truncated
        return obs, reward, terminated, truncated, info

    def __getattr__(self, name: str) -> Any:
        if name in SHARED_ATTRIBUTES:
            return getattr(self.batched.template, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r} (a lockstep sub-env offers "
                             f"{sorted(SHARED_ATTRIBUTES)} and its own batch, student state and evaluation)")

    @property
    def batch_indices(self) -> np.ndarray:
        return self.batched.batch_indices[self.index]

    def evaluate(self, split: str = "dev") -> dict[str, float]:
        return {name: float(values[self.index]) for name, values in self.batched.evaluate(split).items()}

    def student_state(self) -> dict[str, dict]:
        return self.batched.student_state(self.index)

    def load_student_state(self, state: dict[str, dict]) -> None:
        self.batched.load_student_state(self.index, state)


def _plain(info: dict[str, Any]) -> dict[str, Any]:
    """Numpy scalars as Python numbers, as the single env reports them."""
    return {key: value.item() if isinstance(value, np.generic) else value for key, value in info.items()}


def train_in_lockstep(configs: list[TrainConfig], callbacks: list | None = None) -> list[TrainResult | BaseException]:
    """The runs of ``configs`` (the same run but for the seed) over one batched env, one thread each.

    Returns each run's result, or the error that stopped it.
    """
    first = configs[0]
    if not agent_class(first.agent).runs_in_lockstep:
        raise ValueError(f"agent {first.agent!r} draws from shared random generators: run its seeds separately")
    if any({**vars(c), "seed": 0} != {**vars(first), "seed": 0} for c in configs):
        raise ValueError("lockstep runs must share everything but the seed")
    callbacks = callbacks or [None] * len(configs)
    try:  # a bad env or agent setting is every seed's error
        vector_env = gym.make_vec(first.env_id, num_envs=len(configs), vectorization_mode="vector_entry_point",
                                  per_env_fallback=True, **first.env_kwargs)
        lockstep = Lockstep(vector_env.unwrapped)
        runs: list[StartedRun] = [start_run(config, base_env=sub_env) for config, sub_env in zip(configs, lockstep.sub_envs)]
    except Exception as error:  # noqa: BLE001 - returned like a failed run's
        return [error] * len(configs)
    outcomes: list[TrainResult | BaseException | None] = [None] * len(runs)

    def learn(i: int) -> None:
        try:
            outcomes[i] = runs[i].finish(callbacks[i])
            lockstep.leave(i, "ended")
        except BaseException as error:  # noqa: BLE001 - reported per run, and the others are released
            outcomes[i] = error
            lockstep.leave(i, f"failed: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=learn, args=(i,), name=f"lockstep-{i}") for i in range(len(runs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    vector_env.close()
    return outcomes
