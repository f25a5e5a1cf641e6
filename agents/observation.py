"""Read the env's flat observation as (B, K, F) and pick features by name."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from kd_env.errors import UserError


class ObservationView:
    """The layout of one env's observation: ``env.unwrapped.obs_shape`` and ``feature_names``."""

    def __init__(self, env: gym.Env) -> None:
        unwrapped = env.unwrapped
        self.shape: tuple[int, int, int] = tuple(unwrapped.obs_shape)
        self.names: list[str] = list(unwrapped.feature_names)
        self._index = {name: i for i, name in enumerate(self.names)}

    def grid(self, obs: np.ndarray) -> np.ndarray:
        """Flat (B*K*F,) -> (B, K, F)."""
        return np.asarray(obs, dtype=np.float32).reshape(self.shape)

    def feature(self, grid: np.ndarray, name: str) -> np.ndarray:
        """The (B, K) values of one named feature; the env must observe it."""
        if name not in self._index:
            raise UserError(f"this agent needs the observation feature {name!r}; the env observes {self.names}")
        return grid[..., self._index[name]]


def unsquash(values: np.ndarray) -> np.ndarray:
    """Invert the env's ``squash(x) = x / (1 + x)`` (``kd_env.features``) to recover a loss."""
    values = np.clip(values, 0.0, 1.0 - 1e-6)
    return values / (1.0 - values)
