"""Named teacher pools: regimes in which per-instance teacher selection can (or cannot) matter.

A pool is a list of teachers as ``teachers`` takes them (names or ``TeacherSpec`` field dicts), so ``teachers="biased-specialists"`` and the same list
written out by hand build the same cached teachers. The pools differ in where the teachers' errors lie:

| pool                 | teachers                                                                   |
|----------------------|----------------------------------------------------------------------------|
| `specialists`        | MiniLM-L6 fine-tuned (2 epochs) on one of 3 semantic clusters each, nothing elsewhere |
| `biased-specialists` | the same, but taught gold + 1 outside their cluster: confidently wrong there |
| `mixed-quality`      | the default MiniLM-L6, one trained on 40% flipped labels, an under-trained MiniLM-L3 (10% of the data) |
| `strong-diverse`     | MiniLM-L6, MiniLM-L3 and MPNet-L3, each fine-tuned for 3 epochs            |
| `default`            | the task's default teachers (``DEFAULT_TEACHERS``)                         |

In the two specialist pools each instance has one teacher that learned its cluster honestly, so
"select the teacher that is right" has a known answer on real text.
"""

from __future__ import annotations

NUM_SLICES = 3


def _specialists(outside: str, epochs: int) -> list[dict]:
    return [
        {"name": f"minilm-l6-cluster{i}", "encoder": "minilm-l6", "slice": f"cluster:{NUM_SLICES}:{i}",
         "outside_slice": outside, "epochs": epochs}
        for i in range(NUM_SLICES)
    ]


TEACHER_POOLS: dict[str, list | None] = {
    "default": None,
    "specialists": _specialists("drop", epochs=2),
    "biased-specialists": _specialists("shift", epochs=2),
    "mixed-quality": [
        "minilm-l6",
        {"name": "minilm-l6-noisy", "encoder": "minilm-l6", "label_noise": 0.4},
        {"name": "minilm-l3-undertrained", "encoder": "minilm-l3", "epochs": 1, "train_fraction": 0.1},
    ],
    "strong-diverse": [
        {"name": "minilm-l6-3ep", "encoder": "minilm-l6", "epochs": 3},
        {"name": "minilm-l3-3ep", "encoder": "minilm-l3", "epochs": 3},
        {"name": "mpnet-l3-3ep", "encoder": "mpnet-base", "num_layers": 3, "learning_rate": 5e-5, "epochs": 3},
    ],
}


def pool_teachers(name: str) -> list[dict] | None:
    """The teacher list of a named pool (None = the task's defaults)."""
    if name not in TEACHER_POOLS:
        raise ValueError(f"unknown teacher pool {name!r}; available: {sorted(TEACHER_POOLS)}")
    pool = TEACHER_POOLS[name]
    return None if pool is None else [spec if isinstance(spec, str) else dict(spec) for spec in pool]
