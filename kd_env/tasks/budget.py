"""Label budget and transfer set: which training rows the student gets, and which of them keep a label.

A practitioner has a few labelled examples and a lot of unlabelled in-domain text. The task options
``labels=L`` and ``transfer=U`` (text and synthetic tasks) give the student L labelled rows and U rows
whose labels it may not read: the training split then holds L + U rows and a ``labelled`` mask.

The rows are drawn in two nested, seeded steps, so that budgets with the same L + U share their rows
(and hence every cache entry computed on them), and only the mask differs:

1. the L + U rows: a stratified sample of the available pool;
2. the L labelled rows: a stratified sample of those, with every class present at least once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kd_env.arguments import require_int
from kd_env.errors import UserError


@dataclass(frozen=True)
class LabelBudget:
    """``labels`` labelled rows and ``transfer`` unlabelled ones; ``labels=None``: every row labelled."""

    labels: int | None = None
    transfer: int = 0

    def __post_init__(self) -> None:
        if self.labels is None:
            if self.transfer != 0:
                raise UserError(f"transfer={self.transfer} needs a label budget: set labels=L as well")
            return
        require_int("labels (the label budget)", self.labels, 1)
        require_int("transfer (unlabelled rows)", self.transfer, 0)

    @property
    def active(self) -> bool:
        return self.labels is not None

    @property
    def rows(self) -> int:
        return int(self.labels) + self.transfer


def stratified_sample(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` indices keeping each class's share (largest remainders round up), in index order."""
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / counts.sum()
    quota = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - quota), kind="stable")[: size - quota.sum()]:
        quota[i] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def budget_rows(
    pool_labels: np.ndarray, budget: LabelBudget, num_classes: int, seed: int, where: str, hint: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """(row ids into the pool, labelled mask over those rows) of an active budget.

    Checked before any expensive work: L >= the number of classes, L + U <= the pool, and every class
    keeps a labelled row (``where`` names the pool in the errors, ``hint`` says how to enlarge it)."""
    if not budget.active:
        raise UserError("budget_rows needs a label budget (labels=L)")
    if budget.labels < num_classes:
        raise UserError(f"labels={budget.labels} is fewer than the {num_classes} classes: every class needs a labelled row")
    if budget.rows > len(pool_labels):
        raise UserError(
            f"labels + transfer = {budget.labels} + {budget.transfer} = {budget.rows} rows, but {where} has only "
            f"{len(pool_labels)}" + (f"; {hint}" if hint else "")
        )
    rows = stratified_sample(pool_labels, budget.rows, np.random.default_rng([seed, 2]))
    labelled = np.zeros(len(rows), dtype=bool)
    labelled[stratified_sample(pool_labels[rows], budget.labels, np.random.default_rng([seed, 3]))] = True
    present = np.unique(pool_labels[rows][labelled])
    missing = sorted(set(range(num_classes)) - set(present.tolist()))
    if missing:
        raise UserError(f"labels={budget.labels} leaves classes {missing} without a labelled row (they are rare in {where}); raise labels")
    return rows, labelled
