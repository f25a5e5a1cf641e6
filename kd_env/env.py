"""The teacher-selection environment: one step is one distillation step of the student on one batch.

``TeacherSelectionEnv`` is the one-env ``gym.Env`` view of ``kd_env.core.DistillationCore``: it holds
no MDP logic, only the conversion between the core's tensors and Gymnasium's numpy values.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from kd_env.config import EnvConfig
from kd_env.core import DistillationCore
from kd_env.options import check_option_names

RESET_OPTIONS = ("keep_student",)


def host_info(info: dict[str, torch.Tensor], index: int | None = None) -> dict[str, Any]:
    """The core's ``info`` as Gymnasium values: numpy arrays with the leading env axis, or, for env
    ``index`` alone, Python numbers for scalars and numpy arrays for the rest."""
    if index is None:
        return {key: value.cpu().numpy() for key, value in info.items()}
    return {key: value[index].item() if value.dim() == 1 else value[index].cpu().numpy() for key, value in info.items()}


class CoreSettings:
    """What both views of a core (this env and the vector env) report of its settings."""

    core: DistillationCore

    @property
    def data(self):
        return self.core.data

    @property
    def task(self) -> str:
        return self.core.config.task

    @property
    def action_mode(self) -> str:
        return self.core.config.action_mode

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        return self.core.obs_shape

    @property
    def batch_size(self) -> int:
        return self.core.batch_size

    @property
    def episode_steps(self) -> int:
        return self.core.episode_steps

    @property
    def num_teachers(self) -> int:
        return self.core.num_teachers

    @property
    def num_classes(self) -> int:
        return self.core.num_classes

    @property
    def feature_names(self) -> list[str]:
        return self.core.layout.names

    @property
    def teacher_names(self) -> tuple[str, ...]:
        return self.core.data.teacher_names


def spaces_of(core: DistillationCore) -> tuple[spaces.Box, spaces.Space]:
    """One env's observation and action spaces."""
    b, k, _ = core.obs_shape
    low = np.tile(core.layout.lower_bounds(), b * k)
    observation_space = spaces.Box(low=low, high=np.ones_like(low), dtype=np.float32)
    if core.config.action_mode == "select":
        return observation_space, spaces.MultiBinary(b * k)
    return observation_space, spaces.Box(low=0.0, high=1.0, shape=(b * k,), dtype=np.float32)


class TeacherSelectionEnv(CoreSettings, gym.Env):
    """Choose, for every instance of a training batch, which teachers the student distils from.

    ## Description
    Multi-teacher knowledge distillation as an MDP (Yuan et al., "Reinforced Multi-Teacher Selection
    for Knowledge Distillation", AAAI 2021). K frozen teachers' outputs are precomputed; each step
    the agent sees features of a batch of B training instances and the K teachers, chooses a selection
    (or weight) per (instance, teacher), and the environment trains the student one optimizer step on
    ``(1 - alpha) * CE(y, p_S) + alpha * sum_k w_jk * CE(p_Tk^tau, p_S^tau)`` (see ``kd_env.distill``).
    Teachers never run inside ``step``; only the student does. The MDP itself is
    ``kd_env.core.DistillationCore``; this class is its one-env view (the vector env is its N-env view).

    ## Action Space
    ``TeacherSelection-v1`` (``action_mode="select"``): ``MultiBinary(B * K)``, 1 = learn from that
    teacher. ``TeacherWeighting-v1`` (``action_mode="weights"``): ``Box(0, 1, (B * K,))``, normalised
    per instance. Both flat in row-major (instance, teacher) order: index ``j * K + k``. An instance
    with nothing selected follows ``empty_selection``.

    ## Observation Space
    ``Box((B * K * F,), float32)``, row-major (instance, teacher, feature): reshape to
    ``env.unwrapped.obs_shape == (B, K, F)``. ``env.unwrapped.feature_names`` names the F features;
    the groups and their bounds are in ``kd_env.features``. All values lie in [0, 1] except the
    semantic vector, in [-1, 1].

    ## Rewards
    The mean over the batch of the per-instance rewards named by ``reward`` (``kd_env.rewards``:
    ``student_ce``, ``student_loss``, ``ce_gain``, ``dev_gain``, or one added with
    ``kd_env.rewards.register``), scaled by 1 / log C. On the last step
    ``terminal_bonus * dev_accuracy`` is added. The per-instance rewards are in ``info``.

    ## Starting State
    ``reset(seed=...)`` draws a fresh student initialisation and the batch order from
    ``self.np_random`` (torch's global RNG is never touched). ``reset(options={"keep_student": True})``
    keeps the student and its optimizer (episodes as epochs of one continuing run) and draws a new
    batch order.

    ## Episode End
    Terminated after ``episode_steps`` steps (default: one pass over the training split, dropping the
    last partial batch). Never truncated by the environment itself.

    ## Info
    Always: ``instance_rewards`` (B,); on tasks with a known answer ``oracle``, the expert mask (B*K,)
    of the returned observation's batch; at the episode end ``dev_accuracy``, ``dev_macro_f1``,
    ``dev_ce``. With ``info_level="full"`` (the default) also ``ce``, ``kd``, ``loss`` (batch means
    before the update), ``batch_accuracy``, ``selection_rate`` (K,), ``episode_step``, and on tasks
    with a known answer ``selection_agreement`` (share of the B*K decisions equal to the oracle's)
    and ``expert_weight`` (share of KD weight on expert teachers).

    ## Unlabelled instances
    A task with a transfer set (``SplitData.labelled``) has training instances whose label the env
    never reads: they learn from the KD term alone, the label-reading features (``teacher_ce``,
    ``teacher_correct``, ``student_ce``) are 0 there, and so are rewards computed from the batch's
    labels; ``info["instance_rewarded"]`` (B,) then marks the instances whose reward says something
    of their selection, which per-instance credit must keep to. The label-free rewards (``dev_gain``,
    ``probe_alignment``) read the dev probe set instead and reward every instance.

    ## Arguments
    All are JSON-friendly, so ``env.spec.to_json()`` round-trips. Their defaults and documentation
    live in ``kd_env.config.EnvConfig``; the main ones:

    * ``task``: ``twitter-sentiment`` (default: real tweets, three fine-tuned teachers, prepared and
      cached on first use), ``synthetic``, ``bbc-news``, ``glue:NAME``, ``csv:PATH`` or ``json:PATH``
      (see ``kd_env.tasks``).
    * ``teachers``: teacher names or spec dicts, or a pool name of ``kd_env.teachers.pools``; None = the task's.
    * ``task_options``: options of the task (sizes, seed, columns...).
    * ``student``: ``head``, ``transformer`` or ``bow``; ``student_options``: its options.
    * ``action_mode``: ``select`` or ``weights`` (set by the env id).
    * ``batch_size``: B, instances per step; ``episode_steps``: steps per episode (None = one pass).
    * ``alpha``, ``temperature``, ``tau_squared``, ``aggregation``: the KD loss (``kd_env.distill``).
    * ``empty_selection``: ``hard_label`` or ``all_teachers``, for an instance with no teacher.
    * ``reward``: a name registered in ``kd_env.rewards``; ``terminal_bonus``: weight of the final
      dev accuracy; ``probe_size``: dev instances for probe-set rewards (``dev_gain``).
    * ``features``: feature group names (None = all); ``semantic_dim``: size of the semantic vector.
    * ``learning_rate`` (None = the student's default), ``weight_decay``: the student's AdamW.
    * ``info_level``: ``full`` or ``basic`` (see Info).
    * ``device``: where the student trains and the observation is made (``cpu``, ``cuda``, ``auto``).

    ## Examples
    >>> import gymnasium as gym
    >>> import numpy as np
    >>> env = gym.make("kd_env/TeacherSelection-v1", task="synthetic", batch_size=8)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, env.unwrapped.obs_shape
    ((832,), (8, 4, 26))
    >>> obs, reward, terminated, truncated, info = env.step(np.ones(env.action_space.shape, dtype=np.int8))
    >>> info["instance_rewards"].shape, terminated, truncated
    ((8,), False, False)

    ## Version History
    * v1: the default teachers are head-tuned (the ``default`` pool: ready in about a minute, not
      fine-tuned for minutes each; the former ones are the ``fine-tuned`` pool); ``info_level``;
      training instances without a label (a transfer set) are never read through their label.
    * v0: initial version.
    """

    metadata = {"render_modes": []}

    def __init__(self, **kwargs: Any) -> None:
        self.core = DistillationCore(EnvConfig.from_kwargs(kwargs), num_envs=1)
        self.observation_space, self.action_space = spaces_of(self.core)
        self.config, self.layout, self.learning_rate = self.core.config, self.core.layout, self.core.learning_rate

    # ----------------------------------------------------------------------------------------- API

    @property
    def batch_indices(self) -> np.ndarray:
        """Training-split indices of the instances in the current observation, in row order."""
        return self.core.batch_indices[0]

    @property
    def student(self) -> torch.nn.Module:
        """The student as an ordinary module: for the stacked ``head`` and ``bow`` students a copy of
        the current weights (take it again after training), for others the live module."""
        return self.core.student(0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = check_option_names(options, RESET_OPTIONS, "reset")
        obs, info = self.core.reset([self.np_random], keep_student=bool(options.get("keep_student", False)))
        return obs[0].cpu().numpy(), host_info(info, 0)

    def step(self, action):
        obs, rewards, terminated, info = self.core.step(action)
        return obs[0].cpu().numpy(), rewards[0].item(), terminated, False, host_info(info, 0)

    def evaluate(self, split: str = "dev") -> dict[str, float]:
        """The student's accuracy, macro-F1 and CE on a split (``train``, ``dev`` or ``test``)."""
        return {name: value[0].item() for name, value in self.core.evaluate(split).items()}

    def student_state(self) -> dict[str, dict]:
        """The student's and its optimizer's state dicts (copies), for checkpoints and snapshots."""
        return self.core.student_state(0)

    def load_student_state(self, state: dict[str, dict]) -> None:
        """Put a ``student_state()`` back: the student's weights and its optimizer's moments and step.
        The current episode goes on with the loaded student; call
        ``reset(options={"keep_student": True})`` to start a new one with it."""
        self.core.load_student_state(0, state)
