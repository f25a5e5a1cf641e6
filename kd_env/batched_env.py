"""N teacher-selection envs stepped as one computation: the ids' ``vector_entry_point``.

At B=32 with a small student, a single env's step is per-call overhead rather than arithmetic, so N
envs in one process cost about N times one env. Here the N students are one stack
(``kd_env.student_stacks``): one forward, one KD loss, one backward and one AdamW step serve all
sub-envs, and the observation features, rewards and ``info`` are computed on (N, B, ...) arrays.
Teacher outputs, labels and student inputs of the training split are the template env's, shared by
every sub-env; each sub-env holds only its episode (batch order and the inputs gathered for it) and
its student.

The static features (those of the data and the teachers alone) are made once for the whole training
split, in rows as wide as the observation, and gathered per step. A single env makes them per batch
instead, so that its processes share the teacher outputs rather than each holding features of all of
them; here one table serves all N sub-envs of the process, and gathering it costs one indexing call
per step.
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any

import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from kd_env import rewards as reward_fns
from kd_env.distill import kd_loss_and_logit_gradient, soft_targets, weights_from_action
from kd_env.env import EVAL_BATCH, RESET_OPTIONS, TeacherSelectionEnv, losses_after_step
from kd_env.episode import EpisodeBatches, episode_order
from kd_env.features import dynamic_features, log_softmax, static_features
from kd_env.options import check_option_names
from kd_env.student_stacks import HeadStack, require_stackable, stack_students
from kd_env.students import build_student


class BatchedTeacherSelectionEnv(VectorEnv):
    """``num_envs`` independent ``TeacherSelectionEnv`` sub-envs, stepped in lockstep as one computation.

    ## Description
    Sub-env i behaves as ``TeacherSelectionEnv(**env_kwargs)`` reset with seed ``seed + i``: the same
    observations, rewards, terminations and ``info`` for the same actions, up to float rounding
    (batched matmuls sum in another order than single ones; the tests allow 1e-4 relative). With the
    ``head`` student the students are stacked tensors (``kd_env.student_stacks.HeadStack``) and
    ``step`` has no per-env Python loop. Other students need ``per_env_fallback=True``: their
    forwards then run in a loop over the sub-envs (``LoopStack``), the rest stays batched.

    ## Spaces
    ``single_observation_space`` and ``single_action_space`` are the single env's; the batched spaces
    add a leading axis of ``num_envs``: observations (N, B*K*F), actions (N, B*K).

    ## Episodes
    All sub-envs have the same fixed episode length and start together, so they end together and
    are reset together (lockstep: one step counter, one optimizer step count). Autoreset follows
    Gymnasium's default ``NEXT_STEP`` mode: the ``step`` after the last one ignores its actions,
    resets every sub-env and returns the new observations with reward 0. An autoreset draws fresh
    students unless ``autoreset_keep_student`` is set (episodes as epochs of one continuing run).
    ``reset(options={"keep_student": True})`` keeps the students as in the single env; partial
    resets (``reset_mask``) are not supported. At episode ends all students' dev metrics come from
    one batched forward.

    ## Info
    The single env's keys, each an array with a leading axis of N, plus Gymnasium's ``_key`` masks
    (all True: every sub-env reports the same keys at the same step).

    ## Arguments
    ``num_envs``, ``per_env_fallback`` (allow non-stackable students), ``autoreset_keep_student``,
    and every ``TeacherSelectionEnv`` argument (validated by building one template env, whose data,
    spaces and feature layout the sub-envs share).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 1,
        per_env_fallback: bool = False,
        autoreset_keep_student: bool = False,
        **env_kwargs: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        default_student = inspect.signature(TeacherSelectionEnv).parameters["student"].default
        require_stackable(env_kwargs.get("student", default_student), per_env_fallback)
        self.template = TeacherSelectionEnv(**env_kwargs)
        self.num_envs = int(num_envs)
        self.per_env_fallback = per_env_fallback
        self.action_mode = self.template.action_mode
        self.autoreset_keep_student = autoreset_keep_student
        self.single_observation_space = self.template.observation_space
        self.single_action_space = self.template.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.obs_shape = self.template.obs_shape
        self.feature_names = self.template.feature_names
        self.teacher_names = self.template.teacher_names
        self.batch_size = self.template.batch_size
        self.episode_steps = self.template.episode_steps
        self.num_teachers = self.template.num_teachers
        self.num_classes = self.template.num_classes

        env = self.template
        self._teacher_log_probs = log_softmax(env._teacher_logits_np.astype(np.float64))
        self._teacher_probs = np.exp(self._teacher_log_probs)
        # The KD loss's teacher targets, made once for the split and gathered per step (shared, like the logits).
        self._soft_targets = soft_targets(env._teacher_logits, env.kd_config)
        train_labels = env._labels.cpu().numpy()
        static = static_features(env.layout, self._teacher_log_probs, train_labels, env._semantic)
        self._static_width = static.shape[-1]
        # Full-width rows (dynamic columns left zero): one gather makes an observation's static part.
        self._feature_table = np.zeros((*static.shape[:2], env.layout.size), dtype=np.float32)
        self._feature_table[..., : self._static_width] = static
        self._all_true = np.ones(self.num_envs, dtype=bool)
        self._all_true.flags.writeable = False

        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self.students = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._episode: EpisodeBatches | None = None
        self._step = 0
        self._needs_reset = False
        self._pending_logits: torch.Tensor | None = None
        self._pending_saved: Any = None
        self._pending_log_probs: np.ndarray | None = None
        self._probe_ce: np.ndarray | None = None

    # ----------------------------------------------------------------------------------------- API
    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        options = check_option_names(
            options, RESET_OPTIONS, "reset", note="(sub-envs run in lockstep, so there is no reset_mask)"
        )
        self._seed_rngs(seed)
        if not options.get("keep_student", False) or self.students is None:
            self._new_students()
        self._new_episode_batches()
        self._step = 0
        self._needs_reset = False
        self._set_pending(*self.students.forward_for_training(self._episode.inputs(0)))
        if self.template.reward.needs_probe:
            self._probe_ce = self._probe_losses()
        return self._observation(), self._with_masks(self._observation_info())

    def step(self, actions):
        if self._episode is None:
            raise RuntimeError("call reset() before step()")
        expected = (self.num_envs, self.batch_size * self.num_teachers)
        if np.shape(actions) != expected:
            raise ValueError(f"actions must have shape (num_envs, B*K) = {expected}, got {np.shape(actions)}")
        if self._needs_reset:  # NEXT_STEP autoreset: the actions are ignored
            obs, info = self.reset(options={"keep_student": self.autoreset_keep_student})
            zeros = np.zeros(self.num_envs, dtype=bool)
            return obs, np.zeros(self.num_envs), zeros, zeros.copy(), info
        env = self.template
        weights = weights_from_action(actions, env.action_mode, expected, self.num_teachers, env.empty_selection)
        step = self._step
        if self._pending_logits is None:  # dropped by load_student_state
            self._set_pending(*self.students.forward_for_training(self._episode.inputs(step)))
        labels = self._episode.labels[step].flatten()
        teacher_probs = self._soft_targets.index_select(0, self._episode.device_indices[step].flatten())
        weights_t = torch.from_numpy(weights).to(env.device).flatten(0, 1)
        # Scaled by 1/B: the gradient of the sum of the per-env batch means, so each student's is its own single env's.
        parts, logit_gradient = kd_loss_and_logit_gradient(
            self._pending_logits.flatten(0, 1), labels, teacher_probs, weights_t, env.kd_config, 1.0 / self.batch_size
        )
        if not math.isfinite(parts.total.sum().item()):
            bad = np.flatnonzero(~np.isfinite(parts.total.reshape(self.num_envs, -1).sum(dim=1).cpu().numpy()))
            raise FloatingPointError(f"non-finite student loss at step {step} in sub-envs {bad.tolist()}; no student was updated")
        if isinstance(self.students, HeadStack) and np.ptp(self._optimizer_steps) > 0:
            raise RuntimeError(
                f"the stacked students have taken different numbers of optimizer steps {self._optimizer_steps.tolist()} "
                "(load_student_state into some sub-envs only?); their shared AdamW needs them equal"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.students.backward(self._pending_saved, logit_gradient.view_as(self._pending_logits))
        self.optimizer.step()
        self._optimizer_steps += 1
        log_probs_before = self._pending_log_probs
        self._step += 1

        after_logits = self._forwards_after_update(step)
        losses, batch_means = self._losses_around_step(labels, teacher_probs, weights_t, parts, after_logits)
        instance_rewards = reward_fns.instance_rewards(env.reward.name, losses, self.num_classes)
        terminated = self._step >= self.episode_steps
        info = self._step_info(step, batch_means, log_probs_before, weights)
        if terminated:
            dev = self.evaluate("dev")
            info.update({f"dev_{name}": values for name, values in dev.items()})
            instance_rewards = instance_rewards + env.terminal_bonus * dev["accuracy"][:, None]
        info["instance_rewards"] = instance_rewards.astype(np.float32)
        rewards = instance_rewards.sum(axis=1, dtype=np.float64) / self.batch_size
        info.update(self._observation_info())
        self._needs_reset = terminated
        terminations = np.full(self.num_envs, terminated)
        return self._observation(), rewards, terminations, np.zeros(self.num_envs, dtype=bool), self._with_masks(info)

    @torch.no_grad()
    def evaluate(self, split: str = "dev") -> dict[str, np.ndarray]:
        """Every student's accuracy, macro-F1 and CE on a split: (N,) arrays."""
        env = self.template
        if split not in env.data.splits:
            raise ValueError(f"unknown split {split!r}; available: {sorted(env.data.splits)}")
        if self.students is None:
            raise RuntimeError("call reset() before evaluate(): there are no students yet")
        data = env.data.splits[split]
        self.students.train(False)
        logits = []
        for start in range(0, len(data), EVAL_BATCH):
            inputs = {name: t[start : start + EVAL_BATCH].to(env.device) for name, t in data.student_inputs.items()}
            logits.append(self.students.forward(self._shared(inputs)).float())
        self.students.train(True)
        return stacked_classification_metrics(torch.cat(logits, dim=1), data.labels.to(env.device), self.num_classes)

    def student(self, i: int) -> torch.nn.Module:
        """Sub-env i's student as an ordinary module (for the head stack, a copy)."""
        if self.students is None:
            raise RuntimeError("call reset() first: there are no students yet")
        return self.students.student(i)

    @property
    def batch_indices(self) -> np.ndarray:
        """(N, B) training-split indices of the instances in each sub-env's current observation."""
        if self._episode is None:
            raise RuntimeError("call reset() first: there is no current batch")
        return self._episode.indices[self._step]

    def student_state(self, i: int) -> dict[str, dict]:
        """Sub-env i's student and optimizer state, in the single env's ``student_state()`` format (so a
        checkpoint of a sub-env loads into a single env); copies, unlike the single env's."""
        if self.students is None:
            raise RuntimeError("call reset() before student_state(): there are no students yet")
        i = self._sub_env(i)
        views = self.students.parameter_views(i)
        moments = {}
        for j, (tensor, index) in enumerate(views):
            if tensor in self.optimizer.state:
                live = self.optimizer.state[tensor]
                moments[j] = {key: value.clone() if key == "step" else value[index].clone() for key, value in live.items()}
        group = {key: value for key, value in self.optimizer.param_groups[0].items() if key != "params"}
        optimizer = {"state": moments, "param_groups": [{**group, "params": list(range(len(views)))}]}
        return {"student": copy.deepcopy(self.students.student(i).state_dict()), "optimizer": optimizer}

    def load_student_state(self, i: int, state: dict[str, dict]) -> None:
        """Put a ``student_state()`` (of a sub-env or a single env) into sub-env i.

        Stacked students share AdamW's step count, so after loading, every sub-env's student must have
        taken as many steps as the others before the next ``step`` (as when all load states saved at
        the same step): ``step`` raises otherwise.
        """
        if self.students is None:
            raise RuntimeError("call reset() before load_student_state(): there are no students to load into")
        i = self._sub_env(i)
        views, saved = self.students.parameter_views(i), state["optimizer"]["state"]
        missing = [j for j in range(len(views)) if j not in saved]
        if missing:
            raise ValueError(f"the state has no optimizer moments for parameters {missing}: save it after at least one step")
        module = self.students.student(i)
        module.load_state_dict(state["student"])
        self.students.load_student(i, module)
        for j, (tensor, index) in enumerate(views):
            live = self.optimizer.state[tensor]
            if not live:  # no step taken yet: AdamW's state as its first step would make it
                zero_step = torch.zeros((), dtype=torch.float32, device=tensor.device)
                live.update(step=zero_step, exp_avg=torch.zeros_like(tensor), exp_avg_sq=torch.zeros_like(tensor))
            live["exp_avg"][index] = saved[j]["exp_avg"]
            live["exp_avg_sq"][index] = saved[j]["exp_avg_sq"]
            live["step"] = live["step"].fill_(saved[j]["step"]) if index else saved[j]["step"].clone()
        self._optimizer_steps[i] = float(saved[0]["step"])
        self._pending_logits = None  # the old students' forward: ``step`` redoes it

    def __getstate__(self):
        raise TypeError("a BatchedTeacherSelectionEnv cannot be pickled: rebuild it with gym.make_vec")

    def _sub_env(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.num_envs:
            raise ValueError(f"sub-env index must be an integer in [0, {self.num_envs}), got {i!r}")
        return int(i)

    # ------------------------------------------------------------------------------------ internals
    def _seed_rngs(self, seed: int | list[int | None] | None) -> None:
        """Sub-env i gets ``seed + i`` (or ``seed[i]``), as Gymnasium's vector envs seed theirs."""
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed must be an int, None, or a list of num_envs = {self.num_envs} seeds; got {len(seeds)}")
        for i, single_seed in enumerate(seeds):
            if single_seed is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(single_seed)

    def _new_students(self) -> None:
        """Fresh students drawn as each single env draws its own (a per-env loop, at reset only)."""
        env = self.template
        seeds = [int(rng.integers(2**31 - 1)) for rng in self._rngs]
        if isinstance(self.students, HeadStack):
            self.students.reinitialise(seeds)
        else:
            modules = [build_student(env.student_name, env.data, seed, env.student_options).to(env.device) for seed in seeds]
            for module in modules:
                module.train()
            self.students = stack_students(env.student_name, modules, self.per_env_fallback)
        self.optimizer = torch.optim.AdamW(
            self.students.parameters(), lr=env.learning_rate, weight_decay=env.weight_decay, fused=True
        )
        self._optimizer_steps = np.zeros(self.num_envs)
        self._pending_logits = self._pending_saved = None  # they belong to the old students

    def _new_episode_batches(self) -> None:
        """Each sub-env's batch order from its own RNG, stacked step-first: (steps + 1, N, B)."""
        env = self.template
        orders = [episode_order(rng, len(env._labels), self.batch_size, self.episode_steps) for rng in self._rngs]
        self._episode = EpisodeBatches.gather(np.stack(orders, axis=1), env._labels, env._inputs, env._oracle)

    def _pair_inputs(self, step: int) -> dict[str, torch.Tensor]:
        """(N, 2B, ...) inputs: each sub-env's batches ``step`` and ``step + 1``, one after the other."""
        return {
            name: t[step : step + 2].transpose(0, 1).flatten(1, 2) for name, t in self._episode.student_inputs.items()
        }

    def _shared(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The same (R, ...) inputs for every student, as (N, R, ...) views (no copies)."""
        return {name: t.expand(self.num_envs, *t.shape) for name, t in inputs.items()}

    def _set_pending(self, logits: torch.Tensor, saved: Any) -> None:
        """The logits of the next step's batch (its observation's student features and its loss), and
        what the stack's ``backward`` needs of that forward."""
        self._pending_logits, self._pending_saved = logits.float(), saved
        self._pending_log_probs = log_softmax(logits.cpu().numpy().astype(np.float64))

    def _forwards_after_update(self, step: int) -> torch.Tensor | None:
        """As ``TeacherSelectionEnv._forwards_after_update``, for all students at once."""
        if not self.template.reward.needs_batch_after:
            self._set_pending(*self.students.forward_for_training(self._episode.inputs(self._step)))
            return None
        b = self.batch_size
        if self.students.cheap_forward:
            both, saved = self.students.forward_for_training(self._pair_inputs(step))
            self._set_pending(both[:, b:], self.students.second_half(saved, b))
            return both[:, :b].float()
        with torch.no_grad():
            after = self.students.forward(self._episode.inputs(step)).float()
        self._set_pending(*self.students.forward_for_training(self._episode.inputs(self._step)))
        return after

    @torch.no_grad()
    def _losses_around_step(self, labels, teacher_probs, weights, parts, after_logits):
        """(N, B) per-instance losses for the reward, and (3, N) batch means of ce, kd and loss; the
        step's tensors come flattened to (N*B, ...)."""
        env, n, b = self.template, self.num_envs, self.batch_size
        rows = [parts.ce, parts.kd, parts.total]
        if env.reward.needs_batch_after:
            rows += losses_after_step(env.reward, after_logits.flatten(0, 1), labels, teacher_probs, weights, env.kd_config)
        probe = {}
        if env.reward.needs_probe:
            probe_ce_before, self._probe_ce = self._probe_ce, self._probe_losses()
            probe = {"probe_ce_before": probe_ce_before[:, None], "probe_ce_after": self._probe_ce[:, None]}
        values = torch.stack(rows).cpu().numpy().reshape(len(rows), n, b)
        after_rows = dict(zip(("ce_after", "loss_after"), values[3:]))
        losses = reward_fns.StepLosses(ce_before=values[0], **after_rows, **probe)
        return losses, values[:3].sum(axis=2) / b

    @torch.no_grad()
    def _probe_losses(self) -> np.ndarray:
        """(N,) mean CE of every student on the template's dev probe set."""
        env = self.template
        logits = self.students.forward(self._shared(env._probe_inputs)).float()
        labels = env._probe_labels.expand(self.num_envs, -1)
        ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
        return ce.reshape(self.num_envs, -1).mean(dim=1).cpu().numpy().astype(np.float64)

    def _observation(self) -> np.ndarray:
        layout, step = self.template.layout, self._step
        rows = self._episode.indices[step].reshape(-1)
        obs = self._feature_table[rows]
        if not layout.dynamic_groups:
            return obs.reshape(self.num_envs, -1)
        dynamic_features(
            layout,
            self._teacher_log_probs[rows],
            self._pending_log_probs.reshape(len(rows), -1),
            self._episode.labels_np[step].reshape(-1),
            step / self.episode_steps,
            teacher_probs=self._teacher_probs[rows],
            out=obs[..., self._static_width :],
        )
        return obs.reshape(self.num_envs, -1)

    def _observation_info(self) -> dict[str, Any]:
        if self._episode.oracle is None:
            return {}
        return {"oracle": self._episode.oracle[self._step].reshape(self.num_envs, -1).astype(np.int8)}

    def _step_info(self, step, batch_means, log_probs_before, weights: np.ndarray) -> dict[str, Any]:
        """As ``TeacherSelectionEnv._step_info``, with a leading axis of N on every value."""
        n, b = self.num_envs, self.batch_size
        labels = self._episode.labels_np[step]
        correct = np.count_nonzero(log_probs_before.argmax(axis=-1) == labels, axis=1)
        selected = weights > 0
        info: dict[str, Any] = {
            "ce": batch_means[0],
            "kd": batch_means[1],
            "loss": batch_means[2],
            "batch_accuracy": correct / b,
            "selection_rate": selected.sum(axis=1, dtype=np.float32) / np.float32(b),
            "episode_step": np.full(n, self._step),
        }
        if self._episode.oracle is not None:
            experts = self._episode.oracle[step]
            info["selection_agreement"] = np.count_nonzero(selected == experts, axis=(1, 2)) / selected[0].size
            totals = np.maximum(weights.sum(axis=(1, 2), dtype=np.float64), 1e-12)
            info["expert_weight"] = np.where(experts, weights, 0.0).sum(axis=(1, 2)) / totals
        return info

    def _with_masks(self, info: dict[str, Any]) -> dict[str, Any]:
        """Add Gymnasium's ``_key`` masks: every sub-env reports every key (lockstep), so all share
        one read-only all-True array."""
        return {**info, **{f"_{key}": self._all_true for key in info if not key.startswith("_")}}


def sub_env_infos(info: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """A vector env's batched ``info`` (arrays plus ``_key`` masks) as one dict per sub-env, for
    consumers written for single envs (SB3's per-env infos, per-step callbacks)."""
    keys = [key for key in info if not key.startswith("_")]
    return [{key: info[key][i] for key in keys if info.get(f"_{key}", np.ones(num_envs, bool))[i]} for i in range(num_envs)]


def stacked_classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, np.ndarray]:
    """``kd_env.env.classification_metrics`` of N students at once: (N, n, C) logits on the same n
    instances -> (N,) accuracy, macro-F1 (over classes present in labels or predictions) and CE."""
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
        "accuracy": correct.float().mean(dim=1).cpu().numpy().astype(np.float64),
        "macro_f1": torch.nanmean(f1, dim=1).cpu().numpy(),
        "ce": ce.reshape(num_students, -1).mean(dim=1).cpu().numpy().astype(np.float64),
    }
