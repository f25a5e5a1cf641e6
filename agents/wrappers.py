"""Episodes as epochs of one continuing distillation run, for agents that reset the env themselves."""

from __future__ import annotations

import gymnasium as gym


class ContinuingStudent(gym.Wrapper):
    """Every reset after the first keeps the student (``keep_student=True``) unless told otherwise.

    RL libraries reset the env at each episode end; without this, every episode would distil a fresh
    student and the run would end with a student trained for one episode only.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._started = False

    def reset(self, *, seed=None, options=None):
        if self._started:
            options = {"keep_student": True, **(options or {})}
        self._started = True
        return self.env.reset(seed=seed, options=options)
