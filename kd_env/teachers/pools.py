"""Named teacher pools: regimes in which per-instance teacher selection can (or cannot) matter.

A pool is a list of teachers as ``teachers`` takes them (names or ``TeacherSpec`` field dicts), so
``teachers="biased-specialists"`` and the same list written out build the same cached teachers. The
pools differ in where the teachers' errors lie:

| pool                 | teachers                                                                         |
|----------------------|----------------------------------------------------------------------------------|
| `specialists`        | one per k-means cluster (3) of the MiniLM-L6 vectors, trained on that cluster only |
| `biased-specialists` | the same, but taught gold + 1 outside their cluster: confidently wrong there     |
| `mixed-quality`      | a clean teacher, one trained on 40% flipped labels, one on 5% of the data        |
| `default`            | the default teachers: MiniLM-L6 and MiniLM-L3 heads, and a L6 head on 10% of the data |
| `fine-tuned`         | MiniLM-L6, MiniLM-L3 and MPNet (3 layers), each fine-tuned for 1 epoch (minutes each) |

All but `fine-tuned` are head-tuned (``tuning="head"``: an MLP over the frozen MiniLM-L6 vectors, which
the env caches anyway), so preparing one takes seconds (``default``: under a minute from an empty cache,
docs/benchmarks.md). In the specialist pools each instance has one
teacher that learned its cluster honestly, so "select the teacher that is right" has a known answer
on real text.
"""

from __future__ import annotations

NUM_SLICES = 3
HEAD = {"encoder": "minilm-l6", "tuning": "head", "learning_rate": 1e-3, "epochs": 30, "evals_per_epoch": 1}


def _specialists(outside: str) -> list[dict]:
    return [
        {"name": f"cluster{i}-specialist", **HEAD, "slice": f"cluster:{NUM_SLICES}:{i}", "outside_slice": outside}
        for i in range(NUM_SLICES)
    ]


TEACHER_POOLS: dict[str, list] = {
    # Names of ``kd_env.teachers.specs.NAMED_TEACHERS``.
    "default": ["minilm-l6-head", "minilm-l3-head", "minilm-l6-head-10pct"],
    "fine-tuned": ["minilm-l6", "minilm-l3", "mpnet-l3"],
    "specialists": _specialists("drop"),
    "biased-specialists": _specialists("shift"),
    "mixed-quality": [
        {"name": "clean", **HEAD},
        {"name": "noisy-labels", **HEAD, "label_noise": 0.4},
        {"name": "little-data", **HEAD, "train_fraction": 0.05},
    ],
}


def pool_teachers(name: str) -> list:
    """The teacher list of a named pool."""
    if name not in TEACHER_POOLS:
        raise ValueError(f"unknown teacher pool {name!r}; available: {sorted(TEACHER_POOLS)}")
    return [spec if isinstance(spec, str) else dict(spec) for spec in TEACHER_POOLS[name]]


def expand_pools(teachers: list) -> list:
    """A teacher list in which pool names stand for their teachers (``[biased-specialists]``)."""
    expanded = []
    for teacher in teachers:
        expanded.extend(pool_teachers(teacher) if isinstance(teacher, str) and teacher in TEACHER_POOLS else [teacher])
    return expanded
