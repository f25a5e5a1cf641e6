"""Agents for the kd_env environments, all behind one interface: ``agents.make(name, env, **config)``.

Names: see ``agents.agent_names()``. Every agent module registers its names on import.
"""

import kd_env  # noqa: F401  (registers the env ids the agents act on)
from agents import heuristics, mtkd_rl, reinforce, sb3  # noqa: F401  (registers the agents)
from agents.base import Agent, agent_class, agent_names, load, make

__all__ = ["Agent", "agent_class", "agent_names", "load", "make"]
