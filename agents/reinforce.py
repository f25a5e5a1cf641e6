"""The paper's teacher selector (Yuan et al., AAAI 2021): a shared logistic policy trained by REINFORCE.

For every (instance j, teacher k) of a batch, ``pi(a_jk = 1 | s_jk) = sigmoid(W F(s_jk) + b)`` with the
same W for every pair (``hidden_sizes`` turns it into a small MLP). Actions are Bernoulli draws. The
update is ``theta += lr * sum_j sum_k A * grad log pi(a_jk | s_jk)`` with one of three advantages:

* ``episode`` (the paper): A = the episode's return minus a moving average of past returns; one
  update per episode.
* ``step``: A_t = the step's reward minus a moving average of past step rewards.
* ``instance``: A_tj = instance j's reward (``info["instance_rewards"]``) minus the mean reward of the
  batch's other instances, for j's K decisions only: per-instance credit, far lower variance.

The paper's schedule, one recipe, stage lengths in env steps:
(1) ``pretrain_student_steps``: all teachers selected (Avg-KD), the selector idle;
(2) ``pretrain_selector_steps``: the selector learns while the student is frozen: the student is put
    back to its stage-1 state at every episode end and when the stage ends, so stage 2 leaves it as
    stage 1 made it (within an episode it trains as usual, which is what makes rewards informative);
(3) the rest: both train jointly.

The env may be a vector env of N sub-envs in lockstep (``gym.make_vec`` of a kd_env id): one policy
acts on all of them in one forward, each sub-env keeps its own rollout (its own episode return), and
one update covers all rollouts. ``total_steps`` counts env steps of all sub-envs; the callback gets
each sub-env's info. Stage 2 restores a single student and needs a single env.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from agents.base import register
from agents.networks import PairScorer
from agents.observation import ObservationView
from agents.stepping import StepwiseAgent
from agents.tensorboard import find_logger
from kd_env.errors import UserError

ADVANTAGES = ("episode", "step", "instance")


@dataclass(frozen=True)
class ReinforceConfig:
    seed: int = 0
    """Seeds the policy's initialisation, its action draws and the env's first reset."""
    hidden_sizes: tuple[int, ...] = ()
    """Hidden layers of the shared scorer; () is the paper's logistic policy."""
    learning_rate: float = 0.01
    """Adam step size of the policy."""
    advantage: str = "episode"
    """``episode`` (the paper), ``step`` or ``instance``: see the module docstring."""
    baseline_decay: float = 0.9
    """Moving-average baseline: b <- decay * b + (1 - decay) * return."""
    entropy_coef: float = 0.0
    """Weight of the mean Bernoulli entropy bonus."""
    update_every: int = 0
    """Policy update every this many recorded steps; 0 = at episode ends (always so for ``episode``)."""
    pretrain_student_steps: int = 0
    """Stage 1 length: Avg-KD steps before the selector acts."""
    pretrain_selector_steps: int = 0
    """Stage 2 length: selector steps with the student frozen."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        if self.advantage not in ADVANTAGES:
            raise UserError(f"unknown advantage {self.advantage!r}; expected one of {ADVANTAGES}")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise UserError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")
        for name in ("update_every", "pretrain_student_steps", "pretrain_selector_steps"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class Rollout:
    """What the selector saw and did since its last update; ``advantages`` rows are (B,) per step."""

    observations: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    advantages: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.actions)


def moving_average(baseline: float | None, value: float, decay: float) -> float:
    return value if baseline is None else decay * baseline + (1.0 - decay) * value


def leave_one_out_advantage(instance_rewards: np.ndarray, rewarded: np.ndarray | None = None) -> np.ndarray:
    """r_j minus the mean of the other rewarded instances' rewards (the batch's shared drift cancels).

    ``rewarded`` (the env's ``info["instance_rewarded"]``) marks the instances whose reward is a signal;
    the others (no label to reward them by) get advantage 0 and stay out of everyone's baseline."""
    mask = np.ones(len(instance_rewards), dtype=bool) if rewarded is None else np.asarray(rewarded, dtype=bool)
    count = int(mask.sum())
    if count < 2:
        return np.zeros_like(instance_rewards)
    kept = np.where(mask, instance_rewards, 0.0)
    return np.where(mask, kept - (kept.sum() - kept) / (count - 1), 0.0).astype(instance_rewards.dtype)


def snapshot_student(env) -> dict:
    """A copy of the student and its optimizer that later steps leave unchanged."""
    return copy.deepcopy(env.unwrapped.student_state())


@register("reinforce")
class ReinforceAgent(StepwiseAgent):
    config_class = ReinforceConfig
    action_mode = "select"

    def __init__(self, env, config: ReinforceConfig) -> None:
        super().__init__(env, config)
        if env.unwrapped.action_mode != self.action_mode:
            raise UserError(f"{type(self).__name__} needs an env with action_mode={self.action_mode!r}")
        if self.vectorised and config.pretrain_selector_steps:
            raise UserError("pretrain_selector_steps (stage 2) restores a single student: use a single env, not a vector env")
        self.view = ObservationView(env)
        self.run_logger = find_logger(env)  # the run's TensorBoard writer, not a logging.Logger
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.policy = self._build_policy(self.view.shape[-1])
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.learning_rate)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.steps_taken = 0
        self.baseline: float | None = None
        self.rollouts = [Rollout() for _ in range(self.num_envs)]
        self.stage_one_student: dict | None = None
        self._acting_stage = "student"

    # ------------------------------------------------------------------------------- the policy
    def _build_policy(self, num_features: int) -> nn.Module:
        return PairScorer(num_features, self.config.hidden_sizes)

    def _distribution(self, logits: torch.Tensor) -> torch.distributions.Distribution:
        return torch.distributions.Bernoulli(logits=logits)

    def _draw(self, logits: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if deterministic:
            return (logits > 0).float()
        return torch.bernoulli(torch.sigmoid(logits), generator=self.generator)

    def _env_action(self, draw: torch.Tensor, grid: np.ndarray) -> np.ndarray:
        return draw.numpy().astype(np.int8).reshape(-1)

    def _grids(self, obs: np.ndarray) -> np.ndarray:
        """One flat observation or a batch of them -> (N, B, K, F) (N = 1 for one)."""
        return np.asarray(obs, dtype=np.float32).reshape(-1, *self.view.shape)

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """The flat action for one flat observation, or (N, B*K) actions for (N, B*K*F) observations."""
        grids = self._grids(obs)
        with torch.no_grad():
            draw = self._draw(self.policy(torch.from_numpy(grids)), deterministic)
        return self._env_action(draw, grids).reshape(*np.shape(obs)[:-1], -1)

    # ----------------------------------------------------------------------------- the schedule
    def stage(self) -> str:
        """``student``, ``selector`` or ``joint``: where ``steps_taken`` lies in the 3-stage schedule."""
        student_end = self.config.pretrain_student_steps
        if self.steps_taken < student_end:
            return "student"
        if self.steps_taken < student_end + self.config.pretrain_selector_steps:
            return "selector"
        return "joint"

    def act(self, obs: np.ndarray) -> np.ndarray:
        stage = self._acting_stage = self.stage()
        if stage == "selector" and self.stage_one_student is None:
            self.stage_one_student = snapshot_student(self.env)
        if stage == "student":
            return np.ones(self.env.action_space.shape, dtype=self.env.action_space.dtype)
        grids = self._grids(obs)
        with torch.no_grad():
            draws = self._draw(self.policy(torch.from_numpy(grids)), deterministic=False)
        for rollout, grid, draw in zip(self.rollouts, grids, draws.numpy()):
            rollout.observations.append(grid)
            rollout.actions.append(draw)
        return self._env_action(draws, grids).reshape(self.env.action_space.shape)

    def observe(self, obs, reward, terminated, truncated, info) -> dict | None:
        stage = self._acting_stage
        self.steps_taken += self.num_envs
        if stage != "student":
            instance_rewards = np.reshape(info["instance_rewards"], (self.num_envs, -1))
            # Only a transfer set's batch-label rewards mark which instances they reward.
            rewarded = np.reshape(info["instance_rewarded"], (self.num_envs, -1)) if "instance_rewarded" in info else [None] * self.num_envs
            for rollout, env_reward, env_instance_rewards, env_rewarded in zip(self.rollouts, np.atleast_1d(reward), instance_rewards, rewarded):
                self._record(rollout, float(env_reward), env_instance_rewards, env_rewarded)
        episode_over = bool(np.any(terminated) or np.any(truncated))  # sub-envs end together
        leaving_stage_two = stage == "selector" and self.stage() != "selector"
        if episode_over or leaving_stage_two:
            self._update(episode_complete=episode_over)
        elif self.config.advantage != "episode" and 0 < self.config.update_every <= len(self.rollouts[0]):
            self._update(episode_complete=False)
        if stage == "selector" and (episode_over or leaving_stage_two):
            # Stage 2 leaves the student as stage 1 made it: put it back, and start a new episode with it.
            self.env.unwrapped.load_student_state(self.stage_one_student)
            if leaving_stage_two:
                self.stage_one_student = None
            return {"keep_student": True}
        return {} if episode_over else None

    # ------------------------------------------------------------------------------- the update
    def _record(self, rollout: Rollout, reward: float, instance_rewards: np.ndarray, rewarded: np.ndarray | None) -> None:
        mode = self.config.advantage
        rollout.rewards.append(reward)
        if mode == "step":
            rollout.advantages.append(np.full(len(instance_rewards), reward - (reward if self.baseline is None else self.baseline), dtype=np.float32))
            self.baseline = moving_average(self.baseline, reward, self.config.baseline_decay)
        elif mode == "instance":
            rollout.advantages.append(leave_one_out_advantage(np.asarray(instance_rewards, dtype=np.float32), rewarded))

    def _advantages(self, rollout: Rollout) -> np.ndarray:
        """(T, B) advantages of a rollout; for ``episode`` the return's, which moves the baseline."""
        if self.config.advantage != "episode":
            return np.stack(rollout.advantages)
        episode_return = float(np.sum(rollout.rewards))
        advantage = episode_return - (episode_return if self.baseline is None else self.baseline)
        self.baseline = moving_average(self.baseline, episode_return, self.config.baseline_decay)
        self._log("charts/selector_return", episode_return)
        batch = self.view.shape[0]
        return np.full((len(rollout), batch), advantage, dtype=np.float32)

    def _update(self, episode_complete: bool) -> None:
        """One REINFORCE step on the sub-envs' rollouts; ``episode`` rollouts cut mid-episode are dropped."""
        rollouts, self.rollouts = self.rollouts, [Rollout() for _ in self.rollouts]
        if len(rollouts[0]) == 0 or (self.config.advantage == "episode" and not episode_complete):
            return
        advantages = torch.from_numpy(np.concatenate([self._advantages(rollout) for rollout in rollouts])).unsqueeze(-1)
        observations = torch.from_numpy(np.concatenate([np.stack(rollout.observations) for rollout in rollouts]))
        actions = torch.from_numpy(np.concatenate([np.stack(rollout.actions) for rollout in rollouts]))
        distribution = self._distribution(self.policy(observations))
        log_probs = distribution.log_prob(actions)
        policy_loss = -(advantages * log_probs).mean()
        entropy = distribution.entropy().mean()
        loss = policy_loss - self.config.entropy_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._log("losses/policy_loss", policy_loss.item())
        self._log("losses/entropy", entropy.item())
        self._log("losses/advantage_abs_mean", advantages.abs().mean().item())
        if self.baseline is not None:
            self._log("charts/baseline", self.baseline)

    def _log(self, tag: str, value: float) -> None:
        if self.run_logger is not None:
            self.run_logger.scalar(tag, value)

    # -------------------------------------------------------------------------------- save/load
    def _save_state(self, path: Path) -> None:
        torch.save(
            {
                "policy": self.policy.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(),
                "steps_taken": self.steps_taken,
                "baseline": self.baseline,
                "stage_one_student": self.stage_one_student,
            },
            path / "state.pt",
        )

    def _load_state(self, path: Path) -> None:
        state = torch.load(path / "state.pt", weights_only=True)
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.steps_taken = state["steps_taken"]
        self.baseline = state["baseline"]
        self.stage_one_student = state["stage_one_student"]
