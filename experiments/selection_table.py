"""The selection-profile table of a report: how often each learned selector picks each teacher when
that teacher is right and when it is wrong, over seeds, and which selectors are blind.

A rate is the share of training instances (one episode) on which the selector picked the teacher;
seeds are summarised by their mean and range, so seeds that disagree are visible.
"""

from __future__ import annotations

from collections import defaultdict

from experiments.results import RunRecord
from experiments.selection import selection_warning
from kd_env.config import EnvConfig


def _cell(values: list[float | None]) -> str:
    rates = [value for value in values if value is not None]
    if not rates:
        return "-"
    mean = sum(rates) / len(rates)
    return f"{mean:.2f}" if len(rates) == 1 or max(rates) - min(rates) < 0.005 else f"{mean:.2f} ({min(rates):.2f}–{max(rates):.2f})"


def _profiled(records: list[RunRecord]) -> dict[tuple[str, str], list[RunRecord]]:
    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.status == "ok" and record.selection:
            groups[(record.task, record.entry)].append(record)
    return groups


def selection_table(records: list[RunRecord]) -> str:
    """Markdown: per task, learned selector and teacher, the selection rate when the teacher is right
    and when it is wrong (mean over seeds, range in brackets); empty when no run was profiled."""
    groups = _profiled(records)
    if not groups:
        return ""
    lines = ["| task | entry | teacher | selected when right | selected when wrong | seeds |", "|---|---|---|---|---|---|"]
    for (task, entry), runs in sorted(groups.items()):
        for k, teacher in enumerate(runs[0].selection["teachers"]):
            right = [run.selection["rate_when_correct"][k] for run in runs]
            wrong = [run.selection["rate_when_wrong"][k] for run in runs]
            lines.append(f"| {task} | {entry} | {teacher} | {_cell(right)} | {_cell(wrong)} | {len(runs)} |")
    return "\n".join(lines) + "\n"


def selection_warnings(records: list[RunRecord]) -> list[str]:
    """One line per (task, entry) whose selector, on some seeds, picks no teacher or every teacher blindly."""
    found: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for (task, entry), runs in sorted(_profiled(records).items()):
        for run in runs:
            env_kwargs = run.config.get("train", {}).get("env_kwargs", {})
            warning = selection_warning(run.selection, env_kwargs.get("empty_selection", EnvConfig.empty_selection))
            if warning:
                found[(task, entry, warning)].append(run.seed)
    return [f"{task} / {entry} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))}): {warning}"
            for (task, entry, warning), seeds in found.items()]
