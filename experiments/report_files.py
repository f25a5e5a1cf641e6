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
from experiments.results import read_records
from kd_env.errors import UserError


def write_report(results: str | Path, out: str | Path) -> str:
    """headroom.md (the headroom and the claim), table.md, table.csv, single_teachers.md, aggregate.md (IQM and P(improvement) across
    tasks and seeds, ``experiments.aggregate``), accuracy.png, curves.png, selection.png, aggregate.png in
    ``out``; returns the markdown tables, the headroom first (it says how to read the rest)."""
    out = Path(out)
    records = read_records(results)
    rows = summarise(records)
    table = markdown_table(rows)
    singles = single_teacher_table(records)
    headroom = headroom_table(headroom_summary(records)) + "\n" + claim_table(claim_summary(records))
    (out / "headroom.md").write_text(headroom)
    (out / "table.md").write_text(table)
    (out / "single_teachers.md").write_text(singles)
    write_csv(rows, out / "table.csv")
    aggregate_rows = aggregate(records)
    aggregated = aggregate_table(aggregate_rows)
    (out / "aggregate.md").write_text(aggregated)
    plot_aggregate(aggregate_rows, out / "aggregate.png")
    plot_accuracy(rows, out / "accuracy.png")
    plot_curves(records, out / "curves.png")
    plot_selection(records, out / "selection.png")
    return headroom + "\n" + table + ("\n" + singles if singles else "") + "\n" + aggregated


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
