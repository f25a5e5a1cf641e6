"""The agent interface, and the registry behind ``agents.make``: algorithms swap with one word.

Every agent acts on a ``kd_env`` environment and follows one protocol: ``learn(total_steps, callback)``
drives the environment (which trains the student as a side effect), ``predict(obs, deterministic)``
maps one flat observation to one flat action, ``save(path)`` / ``load(path)`` round-trip the agent.
A saved agent is a directory: ``agent.json`` (registry name and config) plus the agent's own state.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from kd_env.errors import UserError

StepCallback = Callable[[dict[str, Any]], bool | None]
"""Called with the env's ``info`` after every env step; returning False stops ``learn``."""

AGENT_FILE = "agent.json"
_REGISTRY: dict[str, tuple[type["Agent"], dict[str, Any]]] = {}


class Agent(ABC):
    """An agent bound to one environment; ``config`` is its frozen dataclass of hyperparameters."""

    name: str = ""
    learns: bool = True
    """False for fixed rules: reports set learned selectors apart from the baselines they must beat."""
    loads_pickle: bool = False
    """True when the saved state is a pickle (SB3's cloudpickle zip): loading it can run code, so
    ``load`` reads it only for a caller who names this agent."""

    def __init__(self, env: gym.Env, config: Any) -> None:
        self.env = env
        self.config = config

    @abstractmethod
    def learn(self, total_steps: int, callback: StepCallback | None = None) -> "Agent":
        """Take ``total_steps`` env steps (SB3 agents: at least that many, whole rollouts)."""

    @abstractmethod
    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """The flat action for one flat observation."""

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / AGENT_FILE).write_text(json.dumps({"name": self.name, "config": asdict(self.config)}, indent=2))
        self._save_state(path)
        return path

    def load(self, path: str | Path) -> "Agent":
        """Restore the state saved in ``path`` into this agent (built with the same config)."""
        self._load_state(Path(path))
        return self

    @abstractmethod
    def _save_state(self, path: Path) -> None: ...

    @abstractmethod
    def _load_state(self, path: Path) -> None: ...


def register(name: str, **defaults: Any) -> Callable[[type[Agent]], type[Agent]]:
    """Class decorator: make ``agents.make(name, env)`` build this class with ``defaults`` as config."""

    def decorate(cls: type[Agent]) -> type[Agent]:
        if name in _REGISTRY:
            raise ValueError(f"agent name {name!r} is already registered")
        _REGISTRY[name] = (cls, defaults)
        return cls

    return decorate


def agent_names() -> list[str]:
    return sorted(_REGISTRY)


def agent_class(name: str) -> type[Agent]:
    """The class registered as ``name`` (its ``learns`` says what it is)."""
    if name not in _REGISTRY:
        raise UserError(f"unknown agent {name!r}; available: {agent_names()}")
    return _REGISTRY[name][0]


def make(name: str, env: gym.Env, **config: Any) -> Agent:
    """Build the agent registered as ``name`` on ``env``; ``config`` overrides its config fields."""
    cls, defaults = agent_class(name), _REGISTRY[name][1]
    agent = cls(env, cls.config_class(**{**defaults, **config}))
    agent.name = name
    return agent


def load(path: str | Path, env: gym.Env, name: str | None = None) -> Agent:
    """Rebuild a saved agent on ``env`` from its directory; ``name``: the agent it must be (a run's
    config names it), refused if ``agent.json`` names another.

    Our agents' state files load with ``torch.load(weights_only=True)``: a tampered file is refused
    instead of running code. SB3 agents load through SB3's own cloudpickle format, which can run code
    by design, so they load only when the caller names them: an edited ``agent.json`` cannot turn a
    data folder into code. Treat an SB3 agent's folder (and an SB3 run's) as code you run.
    """
    path = Path(path)
    saved = json.loads((path / AGENT_FILE).read_text())
    if name is not None and saved["name"] != name:
        raise UserError(f"{path} holds agent {saved['name']!r}, not {name!r}")
    if name is None and agent_class(saved["name"]).loads_pickle:
        raise UserError(f"{path} holds SB3 agent {saved['name']!r}, whose pickled model can run code when loaded: "
                        f"load it with name={saved['name']!r} only if you trust the folder")
    return make(saved["name"], env, **saved["config"]).load(path)
