"""PNG figures of a comparison: accuracy with intervals, learning curves, what selectors learned."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402

from experiments.report import REFERENCE_AGENT, AgentRow  # noqa: E402
from experiments.results import RunRecord  # noqa: E402


def plot_accuracy(rows: list[AgentRow], path: str | Path) -> Path:
    """Mean test accuracy per grid entry with 95% intervals, one panel per task; Avg-KD as a dashed line."""
    tasks = sorted({row.task for row in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 0.45 * max(len(rows) / len(tasks), 4) + 1.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        task_rows = [row for row in rows if row.task == task and row.test_accuracy.n > 0][::-1]
        means = np.array([row.test_accuracy.mean for row in task_rows])
        half = np.array([0.0 if np.isnan(row.test_accuracy.ci95) else row.test_accuracy.ci95 for row in task_rows])
        # An accuracy lies in [0, 1]: the interval is drawn clipped there, so no whisker runs off the axis.
        low, high = np.clip(means - half, 0.0, 1.0), np.clip(means + half, 0.0, 1.0)
        colours = ["tab:orange" if row.entry == REFERENCE_AGENT else "tab:blue" for row in task_rows]
        ax.barh([row.entry for row in task_rows], means, xerr=[means - low, high - means], color=colours, capsize=3)
        reference = [row.test_accuracy.mean for row in task_rows if row.entry == REFERENCE_AGENT]
        if reference:
            ax.axvline(reference[0], color="tab:orange", linestyle="--", linewidth=1, label=f"{REFERENCE_AGENT} mean (the reference)")
            ax.legend(fontsize=7, loc="lower right")
        if len(means):
            ax.set_xlim(max(0.0, low.min() - 0.02), min(1.0, high.max() + 0.01) + 0.01)
        ax.set_xlabel("test accuracy (mean, 95% CI over seeds, clipped to [0, 1])")
        ax.set_title(task)
    fig.tight_layout()
    return _save(fig, path)


def plot_curves(records: list[RunRecord], path: str | Path) -> Path:
    """Episode reward and dev accuracy against env steps, averaged over seeds, per task and grid entry."""
    series: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.status == "ok" and record.curves.get("env_steps"):
            series[(record.task, record.entry)].append(record)
    tasks = sorted({task for task, _ in series})
    fig, axes = plt.subplots(2, max(len(tasks), 1), figsize=(6 * max(len(tasks), 1), 7), squeeze=False)
    for column, task in enumerate(tasks):
        for (series_task, entry), runs in sorted(series.items()):
            if series_task != task:
                continue
            for row, metric in enumerate(("episode_reward", "dev_accuracy")):
                length = min(len(r.curves[metric]) for r in runs)
                if length == 0:
                    continue
                steps = np.asarray(runs[0].curves["env_steps"][:length])
                values = np.mean([r.curves[metric][:length] for r in runs], axis=0)
                axes[row][column].plot(steps, values, label=entry, linewidth=1.2)
        axes[0][column].set_title(task)
        axes[0][column].set_ylabel("episode reward (mean over seeds)")
        axes[1][column].set_ylabel("dev accuracy at episode end")
        axes[1][column].set_xlabel("env steps")
        axes[0][column].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_selection(records: list[RunRecord], path: str | Path) -> Path | None:
    """Per grid entry and task: selection rate when each teacher is right vs wrong, and by difficulty."""
    profiled = [r for r in records if r.status == "ok" and r.selection]
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in profiled:
        groups[(record.task, record.entry)].append(record.selection)
    if not groups:
        return None
    fig, axes = plt.subplots(len(groups), 2, figsize=(11, 3.4 * len(groups)), squeeze=False)
    for row, ((task, entry), profiles) in enumerate(sorted(groups.items())):
        teachers = profiles[0]["teachers"]
        right, wrong = _mean_rates(profiles, "rate_when_correct"), _mean_rates(profiles, "rate_when_wrong")
        x = np.arange(len(teachers))
        axes[row][0].bar(x - 0.2, right, width=0.4, label="teacher right (mean)", color="tab:green")
        axes[row][0].bar(x + 0.2, wrong, width=0.4, label="teacher wrong (mean)", color="tab:red")
        # Each seed as a dot: a mean of seeds that disagree (0.12, 0.08, 1.0) must not pass for a 0.4 policy.
        for offset, key in ((-0.2, "rate_when_correct"), (0.2, "rate_when_wrong")):
            for p in profiles:
                axes[row][0].scatter(x + offset, [np.nan if v is None else v for v in p[key]], color="black", s=9, zorder=3)
        axes[row][0].set_xticks(x, teachers, rotation=15, fontsize=7)
        axes[row][0].set_ylim(0, 1.02)
        axes[row][0].set_ylabel("selection rate (dots: seeds)")
        axes[row][0].set_title(f"{task} / {entry} ({len(profiles)} seed{'s' if len(profiles) != 1 else ''})", fontsize=9)
        axes[row][0].legend(fontsize=7)
        levels = sorted({level for p in profiles for level in p["wrong_teachers"]})
        for k, teacher in enumerate(teachers):
            rates = [
                np.mean([p["rate_by_wrong_teachers"][p["wrong_teachers"].index(level)][k] for p in profiles if level in p["wrong_teachers"]])
                for level in levels
            ]
            axes[row][1].plot(levels, rates, marker="o", label=teacher)
        counts = [sum(p["count_by_wrong_teachers"][p["wrong_teachers"].index(level)] for p in profiles if level in p["wrong_teachers"]) // len(profiles)
                  for level in levels]
        axes[row][1].set_xticks(levels, [f"{level}\n(n={count})" for level, count in zip(levels, counts)], fontsize=7)
        axes[row][1].set_xlabel("instance difficulty: number of teachers wrong (n: instances per seed)")
        axes[row][1].set_ylim(0, 1.02)
        axes[row][1].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _mean_rates(profiles: list[dict], key: str) -> np.ndarray:
    """Per-teacher mean over seeds, skipping seeds where the rate is undefined (None); NaN if all are."""
    columns = zip(*(p[key] for p in profiles))
    return np.array([np.mean([v for v in column if v is not None]) if any(v is not None for v in column) else np.nan for column in map(list, columns)])


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
