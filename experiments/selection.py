"""What a selector learned: how often it picks each teacher, by teacher correctness and difficulty.

Run on a copy of the environment (its own student), so profiling never trains the real student.
Difficulty of an instance = how many of the K teachers get it wrong (0..K).
"""

from __future__ import annotations

import copy

import numpy as np
from tqdm.auto import tqdm

from agents.base import Agent
from agents.heuristics import PrivilegedRule


def selection_profile(agent: Agent, env, steps: int | None = None) -> dict:
    """Selection rates of ``agent`` (deterministic) over ``steps`` batches (default: one episode)."""
    if isinstance(agent, PrivilegedRule):
        # It would act on its own env's batch while the probe steps another: a silently wrong profile.
        raise ValueError(f"{type(agent).__name__} reads its own env's batch, not the observation; its profile is known by construction")
    probe = copy.deepcopy(env.unwrapped)
    if probe.action_mode != "select":
        raise ValueError("selection profiles are defined for TeacherSelection (binary) agents")
    teacher_right = probe.data.splits["train"].teacher_correct().numpy()
    obs, _ = probe.reset(options={"keep_student": True})
    chosen, right = [], []
    for _ in tqdm(range(steps or probe.episode_steps), desc="selection profile", unit="step", leave=False):
        action = agent.predict(obs, deterministic=True)
        chosen.append(np.asarray(action).reshape(probe.batch_size, probe.num_teachers) > 0.5)
        right.append(teacher_right[probe.batch_indices])
        obs, _, terminated, _, _ = probe.step(action)
        if terminated:
            obs, _ = probe.reset(options={"keep_student": True})
    chosen, right = np.concatenate(chosen), np.concatenate(right)
    wrong_count = (~right).sum(axis=1)
    levels = sorted(set(wrong_count.tolist()))
    return {
        "teachers": list(probe.teacher_names),
        "rate_when_correct": [float(chosen[right[:, k], k].mean()) if right[:, k].any() else None for k in range(right.shape[1])],
        "rate_when_wrong": [float(chosen[~right[:, k], k].mean()) if (~right[:, k]).any() else None for k in range(right.shape[1])],
        "wrong_teachers": levels,
        "rate_by_wrong_teachers": [chosen[wrong_count == level].mean(axis=0).tolist() for level in levels],
        "count_by_wrong_teachers": [int((wrong_count == level).sum()) for level in levels],
    }


DEGENERATE_RATE = 0.02
"""A selector whose rates all lie within this of 0 (or 1) picks (or skips) every teacher blindly."""


def selection_warning(selection: dict, empty_selection: str) -> str | None:
    """Say so when a profile selects no teacher, or every teacher, whether right or wrong: what the
    student then equals and what to try instead; None for a profile that tells teachers apart."""
    rates = [rate for rate in selection.get("rate_when_correct", []) + selection.get("rate_when_wrong", []) if rate is not None]
    if not rates:
        return None
    if max(rates) <= DEGENERATE_RATE:
        equals = "Avg-KD's (an empty selection means all teachers)" if empty_selection == "all_teachers" else "no_kd's (an empty selection means the hard label only)"
        return (f"the selector selects no teacher, right or wrong, so the student equals {equals}; "
                "try more epochs, the instance advantage (--agent-kwargs advantage=instance) or the ce_gain reward")
    if min(rates) >= 1 - DEGENERATE_RATE:
        return ("the selector selects every teacher, right or wrong, so the student equals Avg-KD's; "
                "try more epochs, the instance advantage (--agent-kwargs advantage=instance) or the ce_gain reward")
    return None
