"""A results file's tables and plots, written beside it: what a comparison leaves for people to read."""

from __future__ import annotations

from pathlib import Path

from experiments.plots import plot_accuracy, plot_curves, plot_selection
from experiments.report import markdown_table, single_teacher_table, summarise, write_csv
from experiments.results import read_records


def write_report(results: str | Path, out: str | Path) -> str:
    """table.md, table.csv, single_teachers.md, accuracy.png, curves.png, selection.png in ``out``;
    returns the markdown tables."""
    out = Path(out)
    records = read_records(results)
    rows = summarise(records)
    table = markdown_table(rows)
    singles = single_teacher_table(records)
    (out / "table.md").write_text(table)
    (out / "single_teachers.md").write_text(singles)
    write_csv(rows, out / "table.csv")
    plot_accuracy(rows, out / "accuracy.png")
    plot_curves(records, out / "curves.png")
    plot_selection(records, out / "selection.png")
    return table + ("\n" + singles if singles else "")
