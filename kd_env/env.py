"""The teacher-selection environment: one step is one distillation step of the student on one batch."""

from __future__ import annotations

import copy
import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from kd_env import rewards as reward_fns
from kd_env.arguments import require_train_size, validate_env_arguments
from kd_env.devices import resolve_device
from kd_env.distill import KDConfig, kd_loss_from_soft_targets, soft_targets, weights_from_action
from kd_env.episode import EpisodeBatches, episode_order
from kd_env.features import (
    FeatureLayout,
    SemanticProjection,
    StaticFeatureChunks,
    dynamic_features,
    feature_groups,
    log_softmax,
    validate_groups,
)
from kd_env.options import check_option_names
from kd_env.tasks.dispatch import build_distillation_data
from kd_env.students import build_student, default_learning_rate, validate_student_options

RESET_OPTIONS = ("keep_student",)
EVAL_BATCH = 1024


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Accuracy, macro-F1 (over classes present in labels or predictions) and mean CE."""
    predictions = logits.argmax(dim=1)
    ce = torch.nn.functional.cross_entropy(logits, labels).item()
    f1s = []
    for c in range(num_classes):
        tp = ((predictions == c) & (labels == c)).sum().item()
        predicted, actual = (predictions == c).sum().item(), (labels == c).sum().item()
        if predicted + actual > 0:
            f1s.append(2.0 * tp / (predicted + actual))
    return {"accuracy": (predictions == labels).float().mean().item(), "macro_f1": float(np.mean(f1s)), "ce": ce}


class TeacherSelectionEnv(gym.Env):
    """Choose, for every instance of a training batch, which teachers the student distils from.

    ## Description
    Multi-teacher knowledge distillation as an MDP (Yuan et al., "Reinforced Multi-Teacher Selection
    for Knowledge Distillation", AAAI 2021). K frozen teachers' outputs are precomputed; each step
    the agent sees features of a batch of B training instances and the K teachers, chooses a selection
    (or weight) per (instance, teacher), and the environment trains the student one optimizer step on
    ``(1 - alpha) * CE(y, p_S) + alpha * sum_k w_jk * CE(p_Tk^tau, p_S^tau)`` (see ``kd_env.distill``).
    Teachers never run inside ``step``; only the student does.

    ## Action Space
    ``TeacherSelection-v0`` (``action_mode="select"``): ``MultiBinary(B * K)``, 1 = learn from that
    teacher. ``TeacherWeighting-v0`` (``action_mode="weights"``): ``Box(0, 1, (B * K,))``, normalised
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
    ``ce``, ``kd``, ``loss`` (batch means before the update), ``batch_accuracy``, ``selection_rate``
    (K,), ``instance_rewards`` (B,), ``episode_step``; on tasks with a known answer
    ``selection_agreement`` (share of the B*K decisions equal to the oracle's) and ``expert_weight``
    (share of KD weight on expert teachers), and ``oracle``: the expert mask (B*K,) of the returned
    observation's batch; at the episode end ``dev_accuracy``, ``dev_macro_f1``, ``dev_ce``.

    ## Arguments
    All are JSON-friendly, so ``env.spec.to_json()`` round-trips.

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
    * ``device``: where the student trains (``cpu``, ``cuda``, ``auto``).

    ## Examples
    >>> import gymnasium as gym
    >>> import numpy as np
    >>> env = gym.make("kd_env/TeacherSelection-v0", task="synthetic", batch_size=8)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, env.unwrapped.obs_shape
    ((832,), (8, 4, 26))
    >>> obs, reward, terminated, truncated, info = env.step(np.ones(env.action_space.shape, dtype=np.int8))
    >>> info["instance_rewards"].shape, terminated, truncated
    ((8,), False, False)

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        task: str = "twitter-sentiment",
        teachers: list | str | None = None,
        task_options: dict | None = None,
        student: str = "head",
        student_options: dict | None = None,
        action_mode: str = "select",
        batch_size: int = 32,
        episode_steps: int | None = None,
        alpha: float = 0.5,
        temperature: float = 2.0,
        tau_squared: bool = False,
        aggregation: str = "weighted_ce",
        empty_selection: str = "hard_label",
        reward: str = "student_ce",
        terminal_bonus: float = 0.0,
        features: list[str] | None = None,
        semantic_dim: int = 8,
        learning_rate: float | None = None,
        weight_decay: float = 0.0,
        probe_size: int = 256,
        device: str = "cpu",
    ) -> None:
        # Every check that needs no data comes first: preparing a text task fine-tunes teachers.
        self.kd_config = KDConfig(alpha=alpha, temperature=temperature, tau_squared=tau_squared, aggregation=aggregation)
        self.reward = reward_fns.get_reward(reward)
        validate_env_arguments(
            action_mode=action_mode, empty_selection=empty_selection, batch_size=batch_size,
            episode_steps=episode_steps, learning_rate=learning_rate, weight_decay=weight_decay, probe_size=probe_size,
            probe_needed=self.reward.needs_probe, terminal_bonus=terminal_bonus, semantic_dim=semantic_dim,
        )
        groups = validate_groups(list(feature_groups()) if features is None else features)
        validate_student_options(student, student_options)
        self.device = resolve_device(device)
        self.data = build_distillation_data(task, teachers, task_options, student, student_options, min_train_size=batch_size)
        num_train = len(self.data.splits["train"])
        require_train_size(num_train, batch_size)

        self.task = task
        self.student_name = student
        self.student_options = dict(student_options or {})
        self.action_mode = action_mode
        self.batch_size = batch_size
        self.episode_steps = episode_steps or num_train // batch_size
        self.empty_selection = empty_selection
        self.terminal_bonus = float(terminal_bonus)
        self.learning_rate = default_learning_rate(student) if learning_rate is None else learning_rate
        self.weight_decay = weight_decay
        self.num_teachers = self.data.num_teachers
        self.num_classes = self.data.num_classes

        train = self.data.splits["train"]
        projection = SemanticProjection.fit(train.semantic.numpy(), semantic_dim)
        self.layout = FeatureLayout(groups, self.data.class_names, self.data.teacher_names, semantic_dim)
        # Tensors feed the student, numpy arrays the observation (built in numpy: see features). On the
        # CPU both views share the split's memory (memory-mapped for cached teachers): no copies.
        self._labels = train.labels.to(self.device)
        self._inputs = {name: t.to(self.device) for name, t in train.student_inputs.items()}
        self._teacher_logits = train.teacher_logits.to(self.device)
        self._teacher_logits_np = train.teacher_logits.numpy()
        self._semantic = projection(train.semantic.numpy())
        self._oracle = None if train.expert_mask is None else train.expert_mask.numpy().astype(bool)
        dev = self.data.splits["dev"]
        probe = torch.as_tensor(np.random.default_rng(0).permutation(len(dev))[: min(probe_size, len(dev))])
        self._probe_inputs = {name: t[probe].to(self.device) for name, t in dev.student_inputs.items()}
        self._probe_labels = dev.labels[probe].to(self.device)

        b, k, f = batch_size, self.num_teachers, self.layout.size
        self.obs_shape = (b, k, f)
        low = np.tile(self.layout.lower_bounds(), b * k)
        self.observation_space = spaces.Box(low=low, high=np.ones_like(low), dtype=np.float32)
        if action_mode == "select":
            self.action_space = spaces.MultiBinary(b * k)
        else:
            self.action_space = spaces.Box(low=0.0, high=1.0, shape=(b * k,), dtype=np.float32)

        self.student: torch.nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._episode: EpisodeBatches | None = None
        self._static_features: StaticFeatureChunks | None = None
        self._step = 0
        # The student's logits on the current batch (with grad: they feed the next update) and, in
        # numpy, its log-probabilities, which the observation, the loss before the step and info share.
        self._pending_logits: torch.Tensor | None = None
        self._pending_log_probs: np.ndarray | None = None
        self._probe_ce: float | None = None

    # ----------------------------------------------------------------------------------------- API
    @property
    def feature_names(self) -> list[str]:
        return self.layout.names

    @property
    def teacher_names(self) -> tuple[str, ...]:
        return self.data.teacher_names

    @property
    def batch_indices(self) -> np.ndarray:
        """Training-split indices of the instances in the current observation, in row order."""
        if self._episode is None:
            raise RuntimeError("call reset() first: there is no current batch")
        return self._episode.indices[self._step]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = check_option_names(options, RESET_OPTIONS, "reset")
        if not options.get("keep_student", False) or self.student is None:
            self._new_student(int(self.np_random.integers(2**31 - 1)))
        self._new_episode_batches()
        self._step = 0
        self._forward_pending()
        if self.reward.needs_probe:
            self._probe_ce = self._probe_loss()
        return self._observation(), self._observation_info()

    def step(self, action):
        if self._episode is None:
            raise RuntimeError("call reset() before step()")
        if self._step >= self.episode_steps:
            raise RuntimeError(f"the episode ended after {self.episode_steps} steps; call reset()")
        weights = self._weights_from_action(action)
        step = self._step
        labels = self._episode.labels[step]
        teacher_probs = soft_targets(self._teacher_logits[self._episode.device_indices[step]], self.kd_config)
        if self._pending_logits is None:  # dropped by pickling or by load_student_state
            self._forward_pending()
        logits, log_probs_before = self._pending_logits, self._pending_log_probs
        weights_t = torch.from_numpy(weights).to(self.device)
        parts = kd_loss_from_soft_targets(logits, labels, teacher_probs, weights_t, self.kd_config)
        loss = parts.total.mean()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(
                f"non-finite student loss at step {self._step}: loss={loss.item()}, "
                f"ce={parts.ce.mean().item()}, kd={parts.kd.mean().item()}; the student was not updated"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._pending_logits = None
        self._step += 1

        after_logits = self._forwards_after_update(step)
        losses, batch_means = self._losses_around_step(step, labels, teacher_probs, weights_t, parts, after_logits)
        instance_rewards = reward_fns.instance_rewards(self.reward.name, losses, self.num_classes)
        terminated = self._step >= self.episode_steps
        info = self._step_info(step, batch_means, log_probs_before, weights)
        if terminated:
            dev = self.evaluate("dev")
            info.update({f"dev_{name}": value for name, value in dev.items()})
            instance_rewards = instance_rewards + self.terminal_bonus * dev["accuracy"]
        info["instance_rewards"] = instance_rewards.astype(np.float32)
        reward = float(instance_rewards.sum()) / self.batch_size
        info.update(self._observation_info())
        return self._observation(), reward, terminated, False, info

    @torch.no_grad()
    def evaluate(self, split: str = "dev") -> dict[str, float]:
        """The student's accuracy, macro-F1 and CE on a split (``train``, ``dev`` or ``test``)."""
        if split not in self.data.splits:
            raise ValueError(f"unknown split {split!r}; available: {sorted(self.data.splits)}")
        if self.student is None:
            raise RuntimeError("call reset() before evaluate(): there is no student yet")
        data = self.data.splits[split]
        was_training = self.student.training
        self.student.eval()
        logits = []
        for start in range(0, len(data), EVAL_BATCH):
            inputs = {name: t[start : start + EVAL_BATCH].to(self.device) for name, t in data.student_inputs.items()}
            logits.append(self.student(inputs).float())
        self.student.train(was_training)
        return classification_metrics(torch.cat(logits), data.labels.to(self.device), self.num_classes)

    def student_state(self) -> dict[str, dict]:
        """The student's and its optimizer's state dicts, for checkpoints and snapshots.

        The tensors are the live ones (as ``state_dict`` gives them): deep-copy the result to keep it
        past the next step.
        """
        if self.student is None:
            raise RuntimeError("call reset() before student_state(): there is no student yet")
        return {"student": self.student.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_student_state(self, state: dict[str, dict]) -> None:
        """Put a ``student_state()`` back: the student's weights and its optimizer's moments and step.

        The optimizer state is copied, because optimizers keep the loaded tensors themselves: the caller's
        ``state`` survives the next steps. The current episode goes on with the loaded student; call
        ``reset(options={"keep_student": True})`` to start a new one with it.
        """
        if self.student is None:
            raise RuntimeError("call reset() before load_student_state(): there is no student to load into")
        self.student.load_state_dict(state["student"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self._pending_logits = None  # the old student's forward: ``step`` redoes it

    def __getstate__(self):
        # The pending logits hold an autograd graph, which cannot be pickled; they are recomputed.
        state = self.__dict__.copy()
        state["_pending_logits"] = state["_pending_log_probs"] = None
        return state

    # ------------------------------------------------------------------------------------ internals
    def _new_student(self, seed: int) -> None:
        self.student = build_student(self.student_name, self.data, seed, self.student_options).to(self.device)
        self.student.train()
        # The fused kernel makes the optimizer step ~1.3x faster than the default for small students.
        self.optimizer = torch.optim.AdamW(
            self.student.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay, fused=True
        )

    def _new_episode_batches(self) -> None:
        """Shuffled passes over the training split, enough for the episode and one batch past its end."""
        order = episode_order(self.np_random, len(self._labels), self.batch_size, self.episode_steps)
        self._episode = EpisodeBatches.gather(order, self._labels, self._inputs, self._oracle)
        self._static_features = StaticFeatureChunks(
            self.layout, self._teacher_logits_np, self._semantic, self._episode.indices, self._episode.labels_np
        )

    def _student_logits(self, step: int) -> torch.Tensor:
        """The student's logits, with grad, on the batch of ``step``."""
        return self.student(self._episode.inputs(step)).float()

    def _forward_pending(self) -> None:
        """The student's forward on the current batch: kept for its next update and its observation."""
        self._set_pending(self._student_logits(self._step))

    def _set_pending(self, logits: torch.Tensor) -> None:
        self._pending_logits = logits
        self._pending_log_probs = log_softmax(logits.detach().cpu().numpy().astype(np.float64))

    def _forwards_after_update(self, step: int) -> torch.Tensor | None:
        """The student's forwards after updating on batch ``step``; returns its logits there (no grad).

        The logits on batch ``step`` are the reward's (None when it reads only the probe set);
        those on batch ``step + 1`` become the pending ones. A student that declares
        ``cheap_forward`` (its forward costs about the same for 2B rows as for B, e.g. a small MLP)
        gets both in one call on the two batches' rows, adjacent in the episode's arrays; for others
        (transformers) that would double the next backward's work, so they get two calls.
        """
        if not self.reward.needs_batch_after:
            self._forward_pending()
            return None
        if getattr(self.student, "cheap_forward", False):
            both = self.student(self._episode.pair_inputs(step)).float()
            self._set_pending(both[self.batch_size :])
            return both[: self.batch_size].detach()
        with torch.no_grad():
            after = self._student_logits(step)
        self._forward_pending()
        return after

    def _weights_from_action(self, action) -> np.ndarray:
        """Validate an action (raising without touching any state) and turn it into (B, K) weights."""
        expected = (self.batch_size * self.num_teachers,)
        return weights_from_action(action, self.action_mode, expected, self.num_teachers, self.empty_selection)

    @torch.no_grad()
    def _losses_around_step(self, step, labels, teacher_probs, weights, parts, after_logits):
        """Per-instance losses before the step and, as the reward needs, after it; one device transfer.

        Returns the ``StepLosses`` for the reward and the batch means of ce, kd and loss for ``info``.
        """
        rows = [parts.ce, parts.kd, parts.total]
        rows += losses_after_step(self.reward, after_logits, labels, teacher_probs, weights, self.kd_config)
        probe = {}
        if self.reward.needs_probe:
            probe_ce_before, self._probe_ce = self._probe_ce, self._probe_loss()
            probe = {"probe_ce_before": probe_ce_before, "probe_ce_after": self._probe_ce}
        values = torch.stack(rows).cpu().numpy()
        after_rows = dict(zip(("ce_after", "loss_after"), values[3:]))
        losses = reward_fns.StepLosses(ce_before=values[0], **after_rows, **probe)
        return losses, values[:3].sum(axis=1) / self.batch_size

    @torch.no_grad()
    def _probe_loss(self) -> float:
        logits = self.student(self._probe_inputs).float()
        return torch.nn.functional.cross_entropy(logits, self._probe_labels).item()

    def _observation(self) -> np.ndarray:
        step = self._step
        static, teacher_log_probs = self._static_features(step)
        if not self.layout.dynamic_groups:
            return static.reshape(-1)
        dynamic = dynamic_features(
            self.layout, teacher_log_probs, self._pending_log_probs, self._episode.labels_np[step], step / self.episode_steps
        )
        return np.concatenate([static, dynamic], axis=-1).reshape(-1)

    def _observation_info(self) -> dict[str, Any]:
        if self._episode.oracle is None:
            return {}
        return {"oracle": self._episode.oracle[self._step].reshape(-1).astype(np.int8)}

    def _step_info(self, step, batch_means, log_probs_before, weights: np.ndarray) -> dict[str, Any]:
        b = self.batch_size
        ce, kd, loss = batch_means.tolist()
        correct = np.count_nonzero(log_probs_before.argmax(axis=1) == self._episode.labels_np[step])
        selected = weights > 0
        info: dict[str, Any] = {
            "ce": ce,
            "kd": kd,
            "loss": loss,
            "batch_accuracy": correct / b,
            "selection_rate": selected.sum(axis=0, dtype=np.float32) / np.float32(b),
            "episode_step": self._step,
        }
        if self._episode.oracle is not None:
            experts = self._episode.oracle[step]
            info["selection_agreement"] = np.count_nonzero(selected == experts) / selected.size
            info["expert_weight"] = float(weights[experts].sum() / max(float(weights.sum()), 1e-12))
        return info


def losses_after_step(reward, after_logits, labels, teacher_probs, weights, kd_config) -> list[torch.Tensor]:
    """The per-instance rows the reward ``needs`` on the batch after the step: [ce, loss], [ce] or none.

    Shared by the single and the batched env (which passes its (N*B, ...) rows flattened), so both
    compute exactly the same losses for any registered reward.
    """
    if "loss_after" in reward.needs:
        after = kd_loss_from_soft_targets(after_logits, labels, teacher_probs, weights, kd_config)
        return [after.ce, after.total]
    if "ce_after" in reward.needs:
        return [torch.nn.functional.cross_entropy(after_logits, labels, reduction="none")]
    return []
