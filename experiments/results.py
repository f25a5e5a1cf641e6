"""One line of JSON per finished run, appended as soon as the run ends.

The comparison script and the sweep both write this format, so the same tables and plots read either.
A run is identified by its key (grid entry label, task, seed and a hash of its config): a re-run of
an interrupted grid skips every key already present and loses nothing.

Files written before the field ``agent`` was renamed ``entry`` still load (``record_from_json``); the
key's text is unchanged, so their runs still count as done.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kd_env.cache import json_sha256

logger = logging.getLogger(__name__)


def config_hash(config: dict) -> str:
    """A short, order-independent hash of a JSON-friendly config."""
    return json_sha256(config)[:12]


@dataclass(frozen=True)
class RunRecord:
    """The outcome of one (entry, task, seed, config) run; failed runs keep their error."""

    entry: str
    """The grid entry's label (``single:minilm-l6``, ``reinforce_paper``; in a sweep, the agent name),
    not necessarily an agent registry name: that one is ``config["train"]["agent"]``."""
    task: str
    seed: int
    student: str
    teachers: list[str]
    test_accuracy: float | None
    test_macro_f1: float | None
    dev_accuracy: float | None
    env_steps: int
    wall_time_s: float
    config: dict = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None
    teacher_test_accuracy: dict[str, float] = field(default_factory=dict)
    """Each teacher's own test accuracy, to set beside the student distilled from it."""
    curves: dict[str, list[float]] = field(default_factory=dict)
    """Per-episode series: ``env_steps``, ``episode_reward``, ``dev_accuracy``."""
    selection: dict = field(default_factory=dict)
    """What a selector chose, by teacher correctness and instance difficulty (``experiments.selection``)."""

    @property
    def key(self) -> str:
        return run_key(self.entry, self.task, self.seed, self.config)


def finished_record(result, curves: EpisodeCurves, **identity) -> RunRecord:
    """The record of a run that ended: ``identity`` (entry, task, seed, student, teachers, config and
    any extra fields) with the accuracies, steps and time of its ``TrainResult``, and its curves."""
    return RunRecord(
        **identity, test_accuracy=result.test_accuracy, test_macro_f1=result.test_macro_f1,
        dev_accuracy=result.dev_accuracy, env_steps=result.env_steps, wall_time_s=result.wall_time_s, curves=curves.curves,
    )


def failed_record(error: str, env_steps: int, wall_time_s: float, **identity) -> RunRecord:
    """The record of a run that raised: no accuracies, and the error kept for the report."""
    return RunRecord(
        **identity, test_accuracy=None, test_macro_f1=None, dev_accuracy=None, env_steps=env_steps,
        wall_time_s=wall_time_s, status="failed", error=error,
    )


def run_key(entry: str, task: str, seed: int, config: dict) -> str:
    return f"{entry}|{task}|{seed}|{config_hash(config)}"


LEGACY_FIELDS = {"agent": "entry"}
"""Record fields renamed since results files were first written: old JSON key -> field."""


def record_from_json(data: dict) -> RunRecord:
    """A record from its JSON object, old field names (``LEGACY_FIELDS``) mapped to the current ones."""
    for old, new in LEGACY_FIELDS.items():
        if old in data and new not in data:
            data = {new if key == old else key: value for key, value in data.items()}
    return RunRecord(**data)


def append_record(path: str | Path, record: RunRecord) -> None:
    """Append one record and flush it to disk before returning, so a crash right after keeps it.

    The record goes out in one ``write`` on a file opened for appending, and starts on a fresh line:
    a line torn by an earlier crash stays the only unreadable one instead of swallowing this record.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(asdict(record), sort_keys=True) + "\n"
    if not _ends_with_newline(path):
        line = "\n" + line
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(handle, line.encode("utf-8"))
        os.fsync(handle)
    finally:
        os.close(handle)


def _ends_with_newline(path: Path) -> bool:
    """Whether ``path`` is missing, empty, or ends its last line (a torn last line does not)."""
    if not path.exists() or path.stat().st_size == 0:
        return True
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def read_records(path: str | Path) -> list[RunRecord]:
    """All records of a results file; a line that is not a record (cut short by an interruption, a
    byte that is not UTF-8) is skipped with a warning, and only that line is lost."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(record_from_json(json.loads(line.decode("utf-8"))))
        except (ValueError, TypeError) as error:  # bad JSON or UTF-8 (both ValueErrors), or not a record's fields
            logger.warning("skipping unreadable line %d of %s: %s", number, path, error)
    return records


def completed_keys(path: str | Path) -> set[str]:
    """Keys of the runs that finished successfully (failed runs are retried on a re-run)."""
    return {record.key for record in read_records(path) if record.status == "ok"}


class EpisodeCurves:
    """Step callback collecting per-episode reward and end-of-episode dev accuracy for ``RunRecord.curves``."""

    def __init__(self) -> None:
        self.steps, self.reward = 0, 0.0
        self.curves: dict[str, list[float]] = {"env_steps": [], "episode_reward": [], "dev_accuracy": []}

    def __call__(self, info: dict) -> None:
        self.steps += 1
        self.reward += float(info["instance_rewards"].mean())  # the env's reward is this mean
        if "dev_accuracy" in info:
            self.curves["env_steps"].append(self.steps)
            self.curves["episode_reward"].append(self.reward)
            self.curves["dev_accuracy"].append(float(info["dev_accuracy"]))
            self.reward = 0.0
