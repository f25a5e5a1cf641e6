"""A results file's tables and plots, written beside it: what a comparison leaves for people to read."""

from __future__ import annotations

import os
from pathlib import Path

from experiments.aggregate import aggregate, aggregate_table, plot_aggregate
from experiments.plots import plot_accuracy, plot_curves, plot_selection
from experiments.report import (
    claim_summary,
    claim_table,
    headroom_summary,
    headroom_table,
    markdown_table,
    single_teacher_table,
    summarise,
    write_csv,
)
from experiments.results import RunRecord, read_records
from experiments.selection_table import selection_table, selection_warnings
from kd_env.config import closest_profile
from kd_env.errors import UserError

NO_REFERENCE = ("Selection headroom: not measured (no privileged reference, correct_teachers or oracle, ran), so an agent "
                "that does not beat averaging may be failing, or there may be nothing to win.\n")


NO_LEARNER = "The paper's claim: not measured (no learned selector ran).\n"


def settings_note(records: list[RunRecord]) -> str:
    """Which settings profile (kd_env.config) the runs used, and the entries that change it."""
    changes: dict[str, dict] = {}
    names = set()
    for record in records:
        name, differences = closest_profile(record.config.get("train", {}).get("env_kwargs", {}))
        names.add(name)
        if differences:
            changes[record.entry] = differences
    note = f"Settings: profile {', '.join(f'`{name}`' for name in sorted(names))} (kd_env.config)"
    if changes:
        note += "; entries that change it: " + "; ".join(f"{entry} ({', '.join(f'{k}={v}' for k, v in diff.items())})" for entry, diff in sorted(changes.items()))
    return note + ".\n"


def write_report(results: str | Path, out: str | Path) -> str:
    """headroom.md (the headroom and the claim), table.md, table.csv, selection.md (what the selectors pick),
    single_teachers.md (where single-teacher runs exist), aggregate.md (IQM and P(improvement) across
    tasks and seeds, ``experiments.aggregate``), accuracy.png, curves.png, selection.png, aggregate.png in
    ``out``; returns the markdown: the settings, then the headroom where a privileged reference ran (it
    says how to read the rest), the table, the selection profiles and the aggregate."""
    out = Path(out)
    records = read_records(results)
    rows = summarise(records)
    table = markdown_table(rows)
    singles = single_teacher_table(records)
    headrooms = [h for h in headroom_summary(records) if h.reference]
    claims = [claim for claim in claim_summary(records) if claim.selector]
    headroom = (headroom_table(headrooms) if headrooms else NO_REFERENCE) + "\n" + (claim_table(claims) if claims else NO_LEARNER)
    warnings = "".join(f"\nwarning: {line}\n" for line in selection_warnings(records))
    selection = selection_table(records) + warnings
    (out / "headroom.md").write_text(headroom)
    (out / "table.md").write_text(table)
    for name, text in (("single_teachers.md", singles), ("selection.md", selection)):
        if text:
            (out / name).write_text(text)
        else:
            (out / name).unlink(missing_ok=True)  # no empty file, nor a stale one from an earlier grid
    write_csv(rows, out / "table.csv")
    aggregate_rows = aggregate(records)
    aggregated = aggregate_table(aggregate_rows)
    (out / "aggregate.md").write_text(aggregated)
    plot_aggregate(aggregate_rows, out / "aggregate.png")
    plot_accuracy(rows, out / "accuracy.png")
    plot_curves(records, out / "curves.png")
    plot_selection(records, out / "selection.png")
    body = [headroom, table] if headrooms else [table, headroom]
    return "\n".join([settings_note(records), *body, *(part for part in (singles, selection) if part), aggregated])


def check_output_folder(out: Path) -> Path:
    """``out``, if it is or can become a folder: a file on its path, or a broken link, is refused in one
    line before any work (a link to a folder is that folder)."""
    if out.is_symlink() and not out.exists():
        raise UserError(f"output {out} is a link to {os.readlink(out)}, which does not exist")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output {out} exists and is not a folder")
    existing = next(parent for parent in (out, *out.parents) if parent.exists())
    if not existing.is_dir():
        raise UserError(f"cannot create {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise PermissionError(f"cannot write into {existing}, where the output {out} goes")
    return out
