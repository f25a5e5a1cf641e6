"""The distillation core: the one implementation of the teacher-selection MDP, for N envs at once.

A ``DistillationCore`` holds N students (``kd_env.student_stacks``) and steps all of them on
(N, B, K, ...) tensors on its device: actions to weights, the KD loss and its gradient, the update,
the forwards after it, rewards, ``info`` and the next observation. Nothing in a step leaves the
device; callers get tensors. ``TeacherSelectionEnv`` (``kd_env.env``) is its N=1 view as a
``gym.Env`` and ``BatchedTeacherSelectionEnv`` (``kd_env.batched_env``) its N view as a
``VectorEnv``: they only convert at the Gymnasium boundary. Agents that keep their policies on the
device (population learners) step the core directly.

Env i of a core behaves as a single env whose ``np_random`` is ``rngs[i]``: its student, batch order
and everything that follows come from that generator alone, so N envs of one core and N cores of
one env give the same rollouts up to float rounding (batched matmuls sum in another order).

All N envs have the same episode length and start together, so they step in lockstep: one step
counter, one optimizer step count (which stacked AdamW needs). The static observation features are
made once for the training split (``kd_env.features.FeatureTable``) and gathered per step; the teacher
outputs themselves stay in the memory-mapped cache, shared between processes.

Training instances without a label (a transfer set, ``SplitData.labelled``) are read only through
label-free paths: the loss uses their KD term alone, the label-reading feature groups are 0 there,
and rewards computed from the batch's labels are 0 there, with ``info["instance_rewarded"]`` marking
the instances whose reward carries a signal (per-instance credit must leave the others out);
``dev_gain`` and ``probe_alignment`` are label-free on the batch and reward every instance.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch

from kd_env import rewards as reward_fns
from kd_env.arguments import require_int, require_teachers, require_train_size, validate_env_arguments
from kd_env.config import EnvConfig
from kd_env.devices import resolve_device
from kd_env.distill import (KDConfig, kd_loss_and_logit_gradient, kd_loss_from_soft_targets, soft_cross_entropy, soft_targets,
                            weights_from_action)
from kd_env.episode import EpisodeBatches, episode_order
from kd_env.errors import UserError
from kd_env.features import FeatureLayout, FeatureTable, SemanticProjection, feature_groups, validate_groups
from kd_env.student_stacks import LoopStack, build_stack
from kd_env.students import build_student, default_learning_rate, validate_student_options
from kd_env.tasks.dispatch import build_distillation_data

EVAL_BATCH = 1024
MEMORY_SHARE = 0.8
"""A core may plan to use at most this share of the memory available when it is built."""


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, torch.Tensor]:
    """N students' (N, n, C) logits on the same n instances -> (N,) accuracy, macro-F1 (over the
    classes present in labels or predictions) and mean CE, as tensors on the logits' device."""
    num_students = logits.shape[0]
    predictions = logits.argmax(dim=-1)
    correct = predictions == labels
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.repeat(num_students), reduction="none")
    predicted = torch.nn.functional.one_hot(predictions, num_classes).sum(dim=1)
    actual = torch.bincount(labels, minlength=num_classes)
    # True positives per class: correct predictions counted by class; the rest go to a spare column.
    hits = torch.nn.functional.one_hot(torch.where(correct, predictions, num_classes), num_classes + 1)
    true_positives = hits[..., :num_classes].sum(dim=1)
    counted = (predicted + actual).double()
    f1 = torch.where(counted > 0, 2.0 * true_positives / counted.clamp_min(1.0), torch.nan)
    return {
        "accuracy": correct.double().mean(dim=1),
        "macro_f1": torch.nanmean(f1, dim=1),
        "ce": ce.double().view(num_students, -1).mean(dim=1),
    }


def available_memory() -> int:
    """Bytes of memory available to new allocations (``MemAvailable``; physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class DistillationCore:
    """N teacher-selection envs as one computation. See the module docstring; ``kd_env.env`` documents
    the MDP (spaces, rewards, episodes, ``info``)."""

    def __init__(self, config: EnvConfig, num_envs: int = 1) -> None:
        # Every check that needs no data comes first: preparing a text task fine-tunes teachers.
        self.num_envs = require_int("num_envs", num_envs, 1)
        self.config = config
        self.kd_config = KDConfig(alpha=config.alpha, temperature=config.temperature, tau_squared=config.tau_squared,
                                  aggregation=config.aggregation)
        self.reward = reward_fns.get_reward(config.reward)
        validate_env_arguments(
            action_mode=config.action_mode, empty_selection=config.empty_selection, batch_size=config.batch_size,
            episode_steps=config.episode_steps, learning_rate=config.learning_rate, weight_decay=config.weight_decay,
            probe_size=config.probe_size, probe_source=config.probe_source, probe_needed=self.reward.uses_probe_set,
            terminal_bonus=config.terminal_bonus,
            semantic_dim=config.semantic_dim, info_level=config.info_level,
        )
        groups = validate_groups(list(feature_groups()) if config.features is None else config.features)
        validate_student_options(config.student, config.student_options)
        require_teachers(config.teachers)
        self.device = resolve_device(config.device)
        self.data = build_distillation_data(config.task, config.teachers, config.task_options, config.student,
                                            config.student_options, min_train_size=config.batch_size)
        train = self.data.splits["train"]
        require_train_size(len(train), config.batch_size)

        self.batch_size = config.batch_size
        self.episode_steps = config.episode_steps or len(train) // config.batch_size
        self.learning_rate = default_learning_rate(config.student) if config.learning_rate is None else config.learning_rate
        self.num_teachers = self.data.num_teachers
        self.num_classes = self.data.num_classes
        self.full_info = config.info_level == "full"
        self.layout = FeatureLayout(groups, self.data.class_names, self.data.teacher_names, config.semantic_dim)
        self.obs_shape = (self.batch_size, self.num_teachers, self.layout.size)
        self._require_memory()

        # On the CPU the teacher logits stay the cache's memory-mapped arrays (no copy).
        self._labels = train.labels.to(self.device)
        self._labelled = train.label_mask().to(self.device)
        self._all_labelled = bool(self._labelled.all())
        self._teacher_logits = train.teacher_logits.to(self.device)
        self._soft_targets = soft_targets(self._teacher_logits, self.kd_config)
        projection = SemanticProjection.fit(train.semantic.numpy(), config.semantic_dim)
        semantic = torch.from_numpy(projection(train.semantic.numpy())).to(self.device)
        self._features = FeatureTable(self.layout, self._teacher_logits, self._labels, self._labelled, semantic)
        self._oracle = None if train.expert_mask is None else train.expert_mask.to(self.device, torch.bool)
        source = self.data.splits["dev"] if config.probe_source == "dev" else train
        candidates = np.flatnonzero(source.label_mask().numpy())
        probe = torch.as_tensor(np.random.default_rng(0).permutation(candidates)[: config.probe_size])
        self._probe_inputs = {name: t[probe].to(self.device) for name, t in source.student_inputs.items()}
        self._probe_labels = source.labels[probe].to(self.device)

        self.students = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._encoded: dict[str, dict[str, torch.Tensor]] = {}
        self._optimizer_steps = np.zeros(self.num_envs)
        self._steps_may_differ = False
        self._episode: EpisodeBatches | None = None
        self.step_count = 0
        self._pending_logits: torch.Tensor | None = None
        self._pending_saved: Any = None
        self._probe_ce: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------- episodes
    def reset(self, rngs: list[np.random.Generator], keep_student: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Start an episode in every env: fresh students (unless ``keep_student``) and batch orders,
        env i drawing from ``rngs[i]``. Returns the (N, B*K*F) observation and its ``info``."""
        if len(rngs) != self.num_envs:
            raise ValueError(f"reset needs one generator per env ({self.num_envs}), got {len(rngs)}")
        if not keep_student or self.students is None:
            self._new_students([int(rng.integers(2**31 - 1)) for rng in rngs])
        order = np.stack([episode_order(rng, len(self._labels), self.batch_size, self.episode_steps) for rng in rngs], axis=1)
        self._episode = EpisodeBatches.gather(order, self._labels, self._labelled, self._split_inputs("train"), self._oracle)
        self._episode_features = self._features.for_episode(self._episode.rows)
        self.step_count = 0
        self._forward_pending()
        if self.reward.needs_probe:
            self._probe_ce = self._probe_losses()
        return self._observation(), self._observation_info()

    def step(self, actions) -> tuple[torch.Tensor, torch.Tensor, bool, dict[str, torch.Tensor]]:
        """One distillation step of every env: (N, B*K) actions (any array or tensor; with N=1 also a
        flat (B*K,) one) ->
        (N, B*K*F) observations, (N,) float64 rewards, whether the episodes ended, and ``info``
        (tensors with a leading axis of N). A malformed action or a non-finite loss raises before
        anything changes."""
        if self._episode is None:
            raise RuntimeError("call reset() before step()")
        if self.step_count >= self.episode_steps:
            raise RuntimeError(f"the episode ended after {self.episode_steps} steps; call reset()")
        weights = self._weights(actions)
        b, step = self.batch_size, self.step_count
        if self._pending_logits is None:  # dropped by pickling or by load_student_state
            self._forward_pending()
        labels, labelled = self._episode.labels[step].flatten(), self._episode.labelled[step].flatten()
        teacher_probs = self._soft_targets.index_select(0, self._episode.rows[step].flatten())
        flat_weights = weights.flatten(0, 1)
        # Scaled by 1/B: the gradient of the sum of the per-env batch means, so each student's is its own env's.
        parts, logit_gradient = kd_loss_and_logit_gradient(
            self._pending_logits.flatten(0, 1), labels, teacher_probs, flat_weights, self.kd_config, 1.0 / b, labelled
        )
        self._require_finite(parts, step)
        if self._steps_may_differ:
            self._require_equal_optimizer_steps()
        self.optimizer.zero_grad(set_to_none=True)
        self.students.backward(self._pending_saved, logit_gradient.view_as(self._pending_logits))
        self.optimizer.step()
        self._optimizer_steps += 1
        logits_before = self._pending_logits
        self.step_count += 1

        # Before the forwards after the update: the look-ahead moves the weights that those forwards' graphs hold.
        lookahead = self._probe_lookahead(step) if "teacher_alignment" in self.reward.needs else None
        after_logits = self._forwards_after_update(step)
        losses = self._step_losses(parts, labels, teacher_probs, weights, after_logits, labelled, lookahead)
        instance_rewards = reward_fns.instance_rewards(self.reward.name, losses, self.num_classes)
        rewarded = self._rewarded(step)
        if rewarded is not None:
            instance_rewards = instance_rewards * rewarded
        terminated = self.step_count >= self.episode_steps
        info: dict[str, torch.Tensor] = {}
        if self.full_info:
            info.update(self._step_diagnostics(step, parts, logits_before, weights))
        if terminated:
            dev = self.evaluate("dev")
            info.update({f"dev_{name}": value for name, value in dev.items()})
            instance_rewards = instance_rewards + self.config.terminal_bonus * dev["accuracy"].unsqueeze(1)
        info["instance_rewards"] = instance_rewards.float()
        if rewarded is not None:
            info["instance_rewarded"] = rewarded
        rewards = instance_rewards.double().sum(dim=1) / b
        info.update(self._observation_info())
        return self._observation(), rewards, terminated, info

    @torch.no_grad()
    def evaluate(self, split: str = "dev") -> dict[str, torch.Tensor]:
        """Every student's accuracy, macro-F1 and CE on a split (``train``, ``dev`` or ``test``): (N,) tensors."""
        if split not in self.data.splits:
            raise UserError(f"unknown split {split!r}; available: {sorted(self.data.splits)}")
        if self.students is None:
            raise RuntimeError("call reset() before evaluate(): there are no students yet")
        inputs = self._split_inputs(split)
        self.students.train(False)
        logits = []
        for start in range(0, len(self.data.splits[split]), EVAL_BATCH):
            logits.append(self.students.forward(self._shared({name: t[start : start + EVAL_BATCH] for name, t in inputs.items()})))
        self.students.train(True)
        return classification_metrics(torch.cat(logits, dim=1).float(), self.data.splits[split].labels.to(self.device), self.num_classes)

    @property
    def batch_indices(self) -> np.ndarray:
        """(N, B) training-split indices of the instances in each env's current observation."""
        if self._episode is None:
            raise RuntimeError("call reset() first: there is no current batch")
        return self._episode.indices[self.step_count]

    # ------------------------------------------------------------------------------------- students
    def student(self, i: int) -> torch.nn.Module:
        """Env i's student as an ordinary module: a copy for stacked students, the live module for the
        per-student loop."""
        self._require_students("student()")
        return self.students.student(self._env_index(i))

    def student_state(self, i: int) -> dict[str, dict]:
        """Env i's student and optimizer state, in the format of one student's ``state_dict()`` and
        one AdamW's ``state_dict()`` over its parameters (copies)."""
        self._require_students("student_state()")
        i = self._env_index(i)
        views, moments = self.students.parameter_views(i), {}
        for j, (tensor, index) in enumerate(views):
            if tensor in self.optimizer.state:
                live = self.optimizer.state[tensor]
                moments[j] = {key: value.clone() if key == "step" else self.students.module_moment(j, i, value[index]) for key, value in live.items()}
        group = {key: value for key, value in self.optimizer.param_groups[0].items() if key != "params"}
        optimizer = {"state": moments, "param_groups": [{**group, "params": list(range(len(views)))}]}
        return {"student": copy.deepcopy(self.students.student(i).state_dict()), "optimizer": optimizer}

    def load_student_state(self, i: int, state: dict[str, dict]) -> None:
        """Put a ``student_state()`` (of any env) into env i: the weights, the optimizer's moments and
        step. Stacked students share AdamW's step count, so every env must have taken as many steps
        as the others before the next ``step`` (``step`` raises otherwise). The current episode goes
        on with the loaded student."""
        self._require_students("load_student_state()")
        i = self._env_index(i)
        views, saved = self.students.parameter_views(i), state["optimizer"]["state"]
        missing = [j for j in range(len(views)) if j not in saved]
        if saved and missing:
            raise ValueError(f"the state has no optimizer moments for parameters {missing}")
        module = self.students.student(i)
        module.load_state_dict(state["student"])
        self.students.load_student(i, module)
        for j, (tensor, index) in enumerate(views):
            live = self.optimizer.state[tensor]
            if not saved:  # saved before any step: no moments
                if index == ():
                    live.clear()
                elif live:
                    live["exp_avg"][index] = 0.0
                    live["exp_avg_sq"][index] = 0.0
                continue
            if not live:  # no step taken yet: AdamW's state as its first step would make it
                zero_step = torch.zeros((), dtype=torch.float32, device=tensor.device)
                live.update(step=zero_step, exp_avg=torch.zeros_like(tensor), exp_avg_sq=torch.zeros_like(tensor))
            for key in ("exp_avg", "exp_avg_sq"):
                live[key][index] = self.students.stack_moment(j, saved[j][key].to(tensor.device))
            live["step"] = live["step"].fill_(saved[j]["step"]) if index else saved[j]["step"].clone().to(live["step"].device)
        self._optimizer_steps[i] = float(saved[0]["step"]) if saved else 0.0
        self._steps_may_differ = True
        self._pending_logits = self._pending_saved = None  # the old students' forward: ``step`` redoes it

    def __getstate__(self):
        # The pending forward may hold an autograd graph, which cannot be pickled; ``step`` redoes it.
        state = self.__dict__.copy()
        state["_pending_logits"] = state["_pending_saved"] = None
        return state

    # ------------------------------------------------------------------------------------ internals
    def _require_memory(self) -> None:
        """Refuse an N whose episode data and students would not fit, before allocating any of it."""
        train = self.data.splits["train"]
        row_bytes = sum(t[0].numel() * t.element_size() for t in train.student_inputs.values()) + 16
        episode_bytes = (self.episode_steps + 1) * self.batch_size * row_bytes
        student = build_student(self.config.student, self.data, 0, self.config.student_options)
        student_bytes = 4 * sum(p.numel() * p.element_size() for p in student.parameters())  # weights, grads, 2 moments
        observation_bytes = 4 * self.batch_size * self.num_teachers * self.layout.size
        per_env = episode_bytes + student_bytes + observation_bytes
        limit = MEMORY_SHARE * available_memory()
        if self.num_envs * per_env > limit:
            raise UserError(
                f"num_envs={self.num_envs} needs about {self.num_envs * per_env / 2**30:.1f} GiB "
                f"({per_env / 2**20:.1f} MiB per env), more than {limit / 2**30:.1f} GiB "
                f"({MEMORY_SHARE:.0%} of the memory available); use at most {max(1, int(limit // per_env))} envs"
            )

    def _new_students(self, seeds: list[int]) -> None:
        """Fresh students drawn as a single env draws its own from each seed, and a fresh optimizer."""
        config = self.config

        def build(seed: int) -> torch.nn.Module:
            return build_student(config.student, self.data, seed, config.student_options).to(self.device)

        if self.students is None:
            self.students = build_stack(config.student, self.data, config.student_options, seeds, self.device, config.weight_decay)
        else:
            self.students.reinitialise(seeds, build)
        # The fused kernel makes the optimizer step ~1.3x faster than the default for small students.
        self.optimizer = torch.optim.AdamW(self.students.parameters(), lr=self.learning_rate,
                                           weight_decay=config.weight_decay, fused=True)
        self._optimizer_steps = np.zeros(self.num_envs)
        self._steps_may_differ = False  # until a state is loaded into one env
        self._pending_logits = self._pending_saved = None  # they belong to the old students

    def _split_inputs(self, split: str) -> dict[str, torch.Tensor]:
        """A split's student inputs on the device, as the stack reads them (made once per split)."""
        if split not in self._encoded:
            inputs = {name: t.to(self.device) for name, t in self.data.splits[split].student_inputs.items()}
            self._encoded[split] = self.students.encode(inputs)
        return self._encoded[split]

    def _probe_rows(self) -> dict[str, torch.Tensor]:
        """The probe set's inputs as the stack reads them, for every student."""
        if "probe" not in self._encoded:
            self._encoded["probe"] = self.students.encode(self._probe_inputs)
        return self._shared(self._encoded["probe"])

    def _shared(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The same (R, ...) inputs for every student, as (N, R, ...) views (no copies)."""
        return {name: t.expand(self.num_envs, *t.shape) for name, t in inputs.items()}

    def _forward_pending(self) -> None:
        """The students' forward on the current batches: kept for their next update and the observation."""
        self._set_pending(*self.students.forward_for_training(self._episode.inputs(self.step_count)))

    def _set_pending(self, logits: torch.Tensor, saved: Any) -> None:
        self._pending_logits, self._pending_saved = logits.float(), saved

    def _forwards_after_update(self, step: int) -> torch.Tensor | None:
        """The students' forwards after updating on batch ``step``; returns their (N, B, C) logits
        there (None when the reward reads only the probe set).

        The logits on batch ``step + 1`` become the pending ones. A stack whose forward costs about
        the same for 2B rows as for B (``cheap_forward``, e.g. small MLPs) gets both in one call on
        the two batches' rows; others (transformers) would double the next backward's work, so they
        get two calls.
        """
        if not self.reward.needs_batch_after:
            self._forward_pending()
            return None
        b = self.batch_size
        if self.students.cheap_forward:
            both, saved = self.students.forward_for_training(self._episode.pair_inputs(step))
            self._set_pending(both[:, b:], self.students.second_half(saved, b))
            return both[:, :b].float()
        with torch.no_grad():
            after = self.students.forward(self._episode.inputs(step)).float()
        self._forward_pending()
        return after

    @torch.no_grad()
    def _step_losses(self, parts, labels, teacher_probs, weights, after_logits, labelled, lookahead) -> reward_fns.StepLosses:
        """The per-instance (N, B) losses around the step that the reward ``needs``; ``weights`` (N, B, K)."""
        n, b = self.num_envs, self.batch_size
        after = {}
        if "loss_after" in self.reward.needs:
            loss = kd_loss_from_soft_targets(after_logits.flatten(0, 1), labels, teacher_probs, weights.flatten(0, 1),
                                             self.kd_config, labelled)
            after = {"ce_after": loss.ce.view(n, b), "loss_after": loss.total.view(n, b)}
        elif "ce_after" in self.reward.needs:
            ce = torch.nn.functional.cross_entropy(after_logits.flatten(0, 1), labels, reduction="none")
            after = {"ce_after": ce.view(n, b)}
        if self.reward.needs_probe:
            before, self._probe_ce = self._probe_ce, self._probe_losses()
            after.update(probe_ce_before=before.unsqueeze(1), probe_ce_after=self._probe_ce.unsqueeze(1))
        if lookahead is not None:
            ahead_logits, probe_drop = lookahead
            targets = teacher_probs.view(n, b, *teacher_probs.shape[1:])
            tau = self.kd_config.temperature

            def pull(logits: torch.Tensor) -> torch.Tensor:  # (N, B, K) CE(p_Tk, p_S) at the KD temperature, in float64:
                return soft_cross_entropy(targets.double(), torch.log_softmax(logits.double() / tau, dim=-1).unsqueeze(2))  # a small difference

            alignment = ((pull(after_logits) - pull(ahead_logits)) / probe_drop.clamp_min(1e-12).view(n, 1, 1)).float()
            after.update(teacher_alignment=alignment, weights=weights)
        return reward_fns.StepLosses(ce_before=parts.ce.view(n, b), **after)

    def _probe_lookahead(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, B, C) logits of the batch ``step`` after a look-ahead step down each student's probe-set
        CE gradient, sized so that its probe CE drops by ``PROBE_DROP`` to first order, and (N,) how
        much it actually dropped; the students are put back exactly (``probe_alignment``)."""
        n = self.num_envs
        logits, saved = self.students.held_out_forward_for_training(self._probe_rows())
        logits = logits.float()
        labels = self._probe_labels.expand(n, -1)
        with torch.no_grad():
            probe_ce = self._probe_ce_of(logits)
            # The gradient of the sum over students of their mean probe CE: each student's is its own.
            gradient = torch.softmax(logits, dim=-1) - torch.nn.functional.one_hot(labels, self.num_classes)
        self.optimizer.zero_grad(set_to_none=True)
        self.students.backward(saved, (gradient / logits.shape[1]).to(logits.dtype))
        views = [[(t, index) for t, index in self.students.parameter_views(i) if t.grad is not None] for i in range(n)]
        with torch.no_grad():
            squared_norms = torch.stack([sum(t.grad[index].pow(2).sum() for t, index in env_views) for env_views in views])
            steps = reward_fns.PROBE_DROP / squared_norms.clamp_min(1e-20)
            kept = {t: t.detach().clone() for env_views in views for t, _ in env_views}
            for i, env_views in enumerate(views):
                for t, index in env_views:
                    t[index] -= steps[i] * t.grad[index]
            ahead = self.students.forward(self._episode.inputs(step)).float()
            drop = probe_ce - self._probe_losses()
            for t, value in kept.items():
                t.copy_(value)
        self.optimizer.zero_grad(set_to_none=True)
        return ahead, drop

    @torch.no_grad()
    def _probe_losses(self) -> torch.Tensor:
        """(N,) mean CE of every student on the dev probe set."""
        return self._probe_ce_of(self.students.forward(self._probe_rows()))

    def _probe_ce_of(self, logits: torch.Tensor) -> torch.Tensor:
        """(N,) mean CE of (N, P, C) probe-set logits, summed in float64 (rewards take differences of it)."""
        labels = self._probe_labels.expand(self.num_envs, -1)
        ce = torch.nn.functional.cross_entropy(logits.double().flatten(0, 1), labels.flatten(), reduction="none")
        return ce.view(self.num_envs, -1).mean(dim=1)

    def _rewarded(self, step: int) -> torch.Tensor | None:
        """(N, B) mask of the instances whose reward says something of their own selection: those with
        a label, when the reward reads the batch's labels and the split has instances without one;
        None when every instance's reward does."""
        if not self.reward.reads_batch_labels or self._all_labelled:
            return None
        return self._episode.labelled[step]

    def _observation(self) -> torch.Tensor:
        step = self.step_count
        log_probs = torch.log_softmax(self._pending_logits.flatten(0, 1), dim=-1) if self.layout.dynamic_groups else None
        features = self._episode_features.observation(step, log_probs, step / self.episode_steps)
        return features.view(self.num_envs, -1)

    def _observation_info(self) -> dict[str, torch.Tensor]:
        if self._episode.oracle is None:
            return {}
        return {"oracle": self._episode.oracle[self.step_count].view(self.num_envs, -1).to(torch.int8)}

    @torch.no_grad()
    def _step_diagnostics(self, step: int, parts, logits_before: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """``info``'s step diagnostics (``info_level="full"``), each with a leading axis of N."""
        n, b = self.num_envs, self.batch_size
        labelled = self._episode.labelled[step]
        means = torch.stack([parts.ce.view(n, b) * labelled, parts.kd.view(n, b), parts.total.view(n, b)]).mean(dim=2).double()
        correct = (logits_before.argmax(dim=-1) == self._episode.labels[step]) & labelled
        selected = weights > 0
        info = {
            "ce": means[0], "kd": means[1], "loss": means[2],
            "batch_accuracy": correct.sum(dim=1) / self._episode.labelled_counts[step],
            "selection_rate": selected.sum(dim=1) / float(b),
            "episode_step": torch.full((n,), self.step_count),
        }
        if self._episode.oracle is not None:
            experts = self._episode.oracle[step]
            info["selection_agreement"] = (selected == experts).flatten(1).sum(dim=1) / float(selected[0].numel())
            info["expert_weight"] = (weights * experts).sum(dim=(1, 2)) / weights.sum(dim=(1, 2)).clamp_min(1e-12)
        return info

    def _weights(self, actions) -> torch.Tensor:
        """Checked (N, B*K) actions (or a single env's (B*K,)) as (N, B, K) weights."""
        n, size = self.num_envs, self.batch_size * self.num_teachers
        mode, empty = self.config.action_mode, self.config.empty_selection
        shape = tuple(actions.shape) if hasattr(actions, "shape") else np.shape(actions)
        if n == 1 and len(shape) != 2:
            return weights_from_action(actions, mode, (size,), self.num_teachers, empty, self.device).unsqueeze(0)
        if shape != (n, size):
            raise ValueError(f"actions must have shape (num_envs, B*K) = {(n, size)}, got {shape}")
        return weights_from_action(actions, mode, (n, size), self.num_teachers, empty, self.device)

    def _require_finite(self, parts, step: int) -> None:
        totals = parts.total.view(self.num_envs, -1).sum(dim=1)
        if bool(totals.isfinite().all()):
            return
        bad = torch.nonzero(~totals.isfinite()).flatten().tolist()
        raise FloatingPointError(
            f"non-finite student loss at step {step} in envs {bad}: loss={parts.total.mean().item()}, "
            f"ce={parts.ce.mean().item()}, kd={parts.kd.mean().item()}; no student was updated"
        )

    def _require_equal_optimizer_steps(self) -> None:
        """After a load into one env (the only way they can differ), stacked students must have taken
        as many AdamW steps as each other."""
        if not isinstance(self.students, LoopStack) and np.ptp(self._optimizer_steps) > 0:
            raise RuntimeError(
                f"the stacked students have taken different numbers of optimizer steps {self._optimizer_steps.tolist()} "
                "(load_student_state into some envs only?); their shared AdamW needs them equal"
            )

    def _require_students(self, what: str) -> None:
        if self.students is None:
            raise RuntimeError(f"call reset() before {what}: there is no student yet")

    def _env_index(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.num_envs:
            raise ValueError(f"env index must be an integer in [0, {self.num_envs}), got {i!r}")
        return int(i)

