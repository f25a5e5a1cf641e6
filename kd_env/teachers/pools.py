"""Named teacher pools: regimes in which per-instance teacher selection can (or cannot) matter.

A pool is a list of teachers as ``teachers`` takes them (names or ``TeacherSpec`` field dicts), so
``teachers="biased-specialists"`` and the same list written out build the same cached teachers. The
pools differ in where the teachers' errors lie:

| pool                 | teachers                                                                         |
|----------------------|----------------------------------------------------------------------------------|
| `specialists`        | one per k-means cluster (3) of the MiniLM-L6 vectors, trained on that cluster only |
| `biased-specialists` | the same, but taught gold + 1 outside their cluster: confidently wrong there     |
| `mixed-quality`      | a clean teacher, one trained on 40% flipped labels, one on 5% of the data        |
| `zoo`                | 6 domain teachers on 4 k-means domains, over MiniLM-L6, MiniLM-L3 and MPNet vectors |
| `zoo-mixed`          | 6 domain teachers on 4 domains: strong (MPNet) and weak (MiniLM-L3, a fifth of the data) |
| `diverse-encoders`   | 3 generalists on all the data, one per encoder: MiniLM-L6, MiniLM-L3 and MPNet heads |
| `default`            | the default teachers: MiniLM-L6 and MiniLM-L3 heads, and a L6 head on 10% of the data |
| `fine-tuned`         | MiniLM-L6, MiniLM-L3 and MPNet (3 layers), each fine-tuned for 1 epoch (minutes each) |

All but `fine-tuned` are head-tuned (``tuning="head"``: an MLP over a frozen encoder's cached vectors,
MiniLM-L6's but in the zoos and `diverse-encoders`), so preparing one takes seconds (``default``: under a minute from an empty cache,
docs/benchmarks.md). In the specialist pools each instance has one
teacher that learned its cluster honestly, so "select the teacher that is right" has a known answer
on real text.

The zoos are what a practitioner downloads: teachers trained elsewhere, each on its own domain and
knowing nothing outside it (``drop``), on encoders of different strength. Two of the four domains have
two teachers, two have one, so each instance is in-domain for one or two of them. Domains are k-means
clusters of the MiniLM-L6 vectors (the task option ``semantic_encoder``) for every teacher, whatever
its own encoder. Each teacher's accuracy in and out of its domain: docs/results.md
(``scripts/pool_accuracy.py``).
"""

from __future__ import annotations

from kd_env.errors import UserError

NUM_SLICES = 3
HEAD = {"encoder": "minilm-l6", "tuning": "head", "learning_rate": 1e-3, "epochs": 30, "evals_per_epoch": 1}
ZOO_DOMAINS = 4
ENCODERS = ("minilm-l6", "minilm-l3", "mpnet-base")
WEAK = {"encoder": "minilm-l3", "train_fraction": 0.2}
"""A weak zoo teacher: the smallest encoder, and a fifth of its domain's data."""


def _domain_teacher(name: str, domain: int, **fields) -> dict:
    return {"name": f"domain{domain}-{name}", **HEAD, **fields, "slice": f"cluster:{ZOO_DOMAINS}:{domain}", "outside_slice": "drop"}


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
    # Every encoder twice; domains 0 and 1 have two teachers, 2 and 3 one.
    "zoo": [
        _domain_teacher("minilm-l6", 0, encoder="minilm-l6"),
        _domain_teacher("mpnet", 0, encoder="mpnet-base"),
        _domain_teacher("minilm-l3", 1, encoder="minilm-l3"),
        _domain_teacher("mpnet", 1, encoder="mpnet-base"),
        _domain_teacher("minilm-l6", 2, encoder="minilm-l6"),
        _domain_teacher("minilm-l3", 3, encoder="minilm-l3"),
    ],
    # A strong and a weak teacher on domains 0 and 1; domain 2 has only a strong one, domain 3 only a weak one.
    "zoo-mixed": [
        _domain_teacher("strong-mpnet", 0, encoder="mpnet-base"),
        _domain_teacher("weak-minilm-l3", 0, **WEAK),
        _domain_teacher("strong-mpnet", 1, encoder="mpnet-base"),
        _domain_teacher("weak-minilm-l3", 1, **WEAK),
        _domain_teacher("strong-mpnet", 2, encoder="mpnet-base"),
        _domain_teacher("weak-minilm-l3", 3, **WEAK),
    ],
    # Competent everywhere, differing only in the encoder (the first two are the named minilm-l6-head and
    # minilm-l3-head: the same fields, so the same cache entries).
    "diverse-encoders": [{"name": f"{encoder}-head", **HEAD, "encoder": encoder} for encoder in ENCODERS],
}


def pool_teachers(name: str) -> list:
    """The teacher list of a named pool."""
    if name not in TEACHER_POOLS:
        raise UserError(f"unknown teacher pool {name!r}; available: {sorted(TEACHER_POOLS)}")
    return [spec if isinstance(spec, str) else dict(spec) for spec in TEACHER_POOLS[name]]


def expand_pools(teachers: list) -> list:
    """A teacher list in which pool names stand for their teachers (``[biased-specialists]``)."""
    expanded = []
    for teacher in teachers:
        expanded.extend(pool_teachers(teacher) if isinstance(teacher, str) and teacher in TEACHER_POOLS else [teacher])
    return expanded
