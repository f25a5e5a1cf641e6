"""Agents that learn one env step at a time, and the one loop that drives them.

A ``StepwiseAgent`` splits learning into ``act`` (an action for the current observation) and
``observe`` (learn from the step's outcome, and say whether the env must be reset). ``drive`` runs
that loop for a list of agents, each on its own env: one agent learning alone (``learn``), or N seeds
of one run whose envs are views of one distillation core (``agents.population``), where each round of
``act`` calls becomes one batched step. The agent's code is the same either way, so N seeds learnt
together give the records each gets alone.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import gymnasium as gym
import numpy as np

from agents.base import Agent, StepCallback
from kd_env.batched_env import sub_env_infos


class StepwiseAgent(Agent):
    """An agent whose learning is a sequence of ``act`` / ``observe`` calls (see the module docstring).

    It must draw random numbers only from generators of its own (seeded from its config), so that
    agents learning side by side do not change each other's draws.
    """

    def __init__(self, env: gym.Env, config: Any) -> None:
        super().__init__(env, config)
        self.vectorised = isinstance(env, gym.vector.VectorEnv)
        self.num_envs = env.num_envs if self.vectorised else 1
        """Env steps one ``act`` covers: the number of sub-envs when the agent drives a vector env."""
        self.observation: np.ndarray | None = None
        """The observation the next ``act`` answers; None before the env's first reset."""

    @abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray:
        """The action to take on ``obs`` while learning."""

    @abstractmethod
    def observe(self, obs, reward, terminated, truncated, info) -> dict | None:
        """Learn from one step's outcome; return the options of the reset the env needs now (``{}``
        for a plain one), or None to go on."""

    def learn(self, total_steps: int, callback: StepCallback | None = None) -> "StepwiseAgent":
        drive([self], total_steps, [callback])
        return self

    def sub_infos(self, info: dict) -> list[dict]:
        """One ``info`` per env the agent drives (a vector env's is split)."""
        return sub_env_infos(info, self.num_envs) if self.vectorised else [info]


def drive(agents: list[StepwiseAgent], total_steps: int, callbacks: list[StepCallback | None], population=None) -> None:
    """``total_steps`` env steps of every agent on its own env (``population``: their envs are its
    views, and each round is one batched step). A callback that returns False stops every agent."""
    if any(agent.observation is None for agent in agents):
        for agent in agents:
            agent.observation, _ = agent.env.reset(seed=agent.config.seed)
    for _ in range(-(-total_steps // agents[0].num_envs)):
        actions = [agent.act(agent.observation) for agent in agents]
        if population is not None:
            population.step(actions)
        outcomes, resets = [], []
        for agent, action in zip(agents, actions):
            obs, reward, terminated, truncated, info = agent.env.step(action)
            agent.observation = obs
            outcomes.append(info)
            resets.append(agent.observe(obs, reward, terminated, truncated, info))
        if any(options is not None for options in resets):
            if any(options is None for options in resets):
                raise RuntimeError("agents learning together must reset their envs together; some did not ask to")
            for agent, options in zip(agents, resets):
                agent.observation, _ = agent.env.reset(options=options)
        stop = False
        for agent, info, callback in zip(agents, outcomes, callbacks):
            if callback is not None and any(callback(sub_info) is False for sub_info in agent.sub_infos(info)):
                stop = True
        if stop:
            return
