"""Fault injection, end to end: crash runs and damage the cache, then print a table of case -> outcome.

    python scripts/fault_check.py          # every case; exit status 1 if any outcome is not the expected one
    python scripts/fault_check.py --only sigkill encoder

Crash cases run ``scripts/train.py`` on the synthetic task in a subprocess and stop it with SIGTERM,
SIGKILL or SIGINT, then resume it here; cache cases prepare a tiny text task (a random 2-layer BERT
and made-up reviews, written here) and damage what the cache stored. Everything happens in a
temporary folder; the real offline encoder MiniLM-L3 is built there once for the encoder case.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tiny_text: the test suite's tiny models and data
# The table is the output: no progress bars from tqdm, datasets or transformers (set before they load).
os.environ.update(TQDM_DISABLE="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error")

import torch  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from pickle_payload import Payload, write_sb3_model  # noqa: E402
from tiny_text import sentiment_rows, write_csv, write_tiny_bert  # noqa: E402

from agents.checkpoints import CheckpointError, latest_checkpoint, read_progress  # noqa: E402
from agents.training import resume  # noqa: E402
from experiments.results import RunRecord, append_record, read_records  # noqa: E402
from kd_env.assets import resolve_encoder  # noqa: E402
from kd_env.cache import MANIFEST  # noqa: E402
from kd_env.tasks.dispatch import build_distillation_data  # noqa: E402

SYNTHETIC = ["task=synthetic", 'task_options={"num_train": 128, "num_dev": 32, "num_test": 32}', "batch_size=16"]
CHECKPOINT_EVERY = 50


class Warnings(logging.Handler):
    """Collects the warnings logged while a case runs: they are part of its outcome."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


WARNINGS = Warnings()


# ------------------------------------------------------------------------------------ crash cases
def start_training(folder: Path, agent: str = "reinforce") -> subprocess.Popen:
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), "--agent", agent, "--total-steps", "1000000",
               "--logdir", str(folder), "--checkpoint-every", str(CHECKPOINT_EVERY), "--env-kwargs", *SYNTHETIC]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def checkpoint_step(run_dir: Path) -> int:
    return read_progress(latest_checkpoint(run_dir))["env_steps"]


def reward_steps(run_dir: Path) -> list[int]:
    """What the event files hold: TensorBoard's purging of orphaned events is off."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    events.Reload()
    return [event.step for event in events.Scalars("charts/reward")]


def stop_and_resume(folder: Path, sig: signal.Signals, expected_code: int) -> str:
    """Start a run, stop it with ``sig`` after its second periodic checkpoint, resume it 20 steps further."""
    process = start_training(folder)
    try:
        wait_for(lambda: bool(list(folder.glob(f"*/checkpoints/step-{2 * CHECKPOINT_EVERY:012d}-*"))), "a periodic checkpoint")
        time.sleep(0.3)  # steps past the checkpoint: the ones a SIGKILL loses
        process.send_signal(sig)
        code = process.wait(timeout=60)
    finally:
        process.kill()
    if code != expected_code:
        raise AssertionError(f"exit status {code}, expected {expected_code}")
    (run_dir,) = folder.iterdir()
    saved = checkpoint_step(run_dir)
    result = resume(run_dir, total_steps=saved + 20)
    steps = reward_steps(run_dir)
    if steps != list(range(1, saved + 21)):
        raise AssertionError(f"TensorBoard steps are not 1..{saved + 20} once each ({len(steps)} values)")
    return f"exit {code}, checkpoint at step {saved}; resumed to {result.env_steps}; every TensorBoard step once"


def case_sigterm(folder: Path) -> str:
    return stop_and_resume(folder, signal.SIGTERM, 128 + signal.SIGTERM)


def case_sigint(folder: Path) -> str:
    return stop_and_resume(folder, signal.SIGINT, 130)


def case_sigkill(folder: Path) -> str:
    return stop_and_resume(folder, signal.SIGKILL, -signal.SIGKILL)


def expect_error(error_type: type[Exception], action: Callable[[], object], contains: str) -> str:
    try:
        action()
    except error_type as error:
        if contains not in str(error):
            raise AssertionError(f"error without {contains!r}: {error}") from error
        return f"refused: {str(error).splitlines()[0]}"
    raise AssertionError(f"no {error_type.__name__}")


def case_sigterm_before_first_checkpoint(folder: Path) -> str:
    """A scheduler's SIGTERM while the run is still being built, then its requeue with --resume."""
    process = start_training(folder)
    try:
        wait_for(lambda: bool(list(folder.glob("*/config.json"))), "the run folder")
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    finally:
        process.kill()
    (run_dir,) = folder.iterdir()
    if latest_checkpoint_or_none(run_dir) is not None:
        return "skipped: the run reached its first checkpoint before the signal (a slow machine would not)"
    result = resume(run_dir, total_steps=20)
    if reward_steps(run_dir) != list(range(1, 21)):
        raise AssertionError("TensorBoard steps are not 1..20 once each")
    return f"exit status {code}, no checkpoint; --resume started at step 0, ran to {result.env_steps}; every TensorBoard step once"


def latest_checkpoint_or_none(run_dir: Path) -> Path | None:
    try:
        return latest_checkpoint(run_dir)
    except CheckpointError:
        return None


def finished_run(folder: Path) -> Path:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--agent", "reinforce", "--total-steps", "20",
                    "--logdir", str(folder), "--env-kwargs", *SYNTHETIC], check=True, capture_output=True, cwd=ROOT)
    (run_dir,) = folder.iterdir()
    return run_dir


def case_truncated_student(folder: Path) -> str:
    run_dir = finished_run(folder)
    student = latest_checkpoint(run_dir) / "student.pt"
    student.write_bytes(student.read_bytes()[:200])
    return expect_error(CheckpointError, lambda: resume(run_dir, total_steps=30), "student.pt is damaged")


def case_missing_agent(folder: Path) -> str:
    run_dir = finished_run(folder)
    for path in sorted((latest_checkpoint(run_dir) / "agent").iterdir()):
        path.unlink()
    return expect_error(CheckpointError, lambda: resume(run_dir, total_steps=30), "agent/agent.json missing")


def case_pickle_payload(folder: Path) -> str:
    run_dir = finished_run(folder)
    marker = folder / "payload-ran"
    torch.save({"policy": Payload(marker)}, latest_checkpoint(run_dir) / "agent" / "state.pt")
    outcome = expect_error(CheckpointError, lambda: resume(run_dir, total_steps=30), "agent is damaged or not a checkpoint")
    if marker.exists():
        raise AssertionError("the payload ran")
    return outcome + " (the payload did not run)"


def case_agent_renamed_to_sb3(folder: Path) -> str:
    run_dir = finished_run(folder)
    marker, agent_dir = folder / "payload-ran", latest_checkpoint(run_dir) / "agent"
    (agent_dir / "agent.json").write_text(json.dumps({"name": "ppo", "config": {}}))
    write_sb3_model(agent_dir / "model.zip", marker)
    expect_error(CheckpointError, lambda: resume(run_dir, total_steps=30), "holds agent 'ppo', not 'reinforce'")
    if marker.exists():
        raise AssertionError("the payload ran")
    return "refused: the checkpoint's agent/ holds agent 'ppo', not the run's 'reinforce' (the payload did not run)"


def case_env_id_naming_a_module(folder: Path) -> str:
    run_dir = finished_run(folder)
    marker = folder / "module-imported"
    (folder / "planted_module.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    sys.path.insert(0, str(folder))
    try:
        config = json.loads((run_dir / "config.json").read_text())
        (run_dir / "config.json").write_text(json.dumps({**config, "env_id": "planted_module:Foo-v0"}))
        expect_error(CheckpointError, lambda: resume(run_dir, total_steps=30), "env_id 'planted_module:Foo-v0' is not one of")
    finally:
        sys.path.remove(str(folder))
    if marker.exists():
        raise AssertionError("the module was imported")
    return "refused: config.json's env_id is not one of the project's ids (the module was not imported)"


def case_torn_results_line(folder: Path) -> str:
    path = folder / "results.jsonl"
    record = RunRecord(entry="avg_kd", task="synthetic", seed=0, student="head", teachers=["a"], test_accuracy=0.5,
                       test_macro_f1=0.5, dev_accuracy=0.5, env_steps=1, wall_time_s=1.0)
    append_record(path, record)
    with path.open("a") as handle:
        handle.write('{"entry": "avg_kd", "ta')  # a crash mid-write
    append_record(path, record)
    WARNINGS.messages.clear()
    count = len(read_records(path))
    if count != 2 or not any("skipping unreadable line 2" in m for m in WARNINGS.messages):
        raise AssertionError(f"{count} records read, expected 2 and a warning about line 2")
    return "both whole records read; the torn line skipped with a warning"


def case_non_utf8_results_line(folder: Path) -> str:
    path = folder / "results.jsonl"
    record = RunRecord(entry="avg_kd", task="synthetic", seed=0, student="head", teachers=["a"], test_accuracy=0.5,
                       test_macro_f1=0.5, dev_accuracy=0.5, env_steps=1, wall_time_s=1.0)
    for seed in range(3):
        append_record(path, replace(record, seed=seed))
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"avg_kd", b"avg\xffkd")
    path.write_bytes(b"\n".join(lines))
    WARNINGS.messages.clear()
    seeds = [r.seed for r in read_records(path)]
    if seeds != [0, 2] or not any("skipping unreadable line 2" in m for m in WARNINGS.messages):
        raise AssertionError(f"records of seeds {seeds} read, expected 0 and 2 and a warning about line 2")
    return "the other records read; the line with the bad byte skipped with a warning"


def case_two_grids_into_one_out(folder: Path) -> str:
    """A second kd-env compare (here, in this process) into the --out of a running one."""
    from kd_cli.app import main as cli

    out = folder / "out"
    arguments = ["--task", "synthetic", "--agents", "no_kd,avg_kd,reinforce", "--seeds", "0-3", "--epochs", "80", "--out", str(out),
                 "--logdir", str(folder / "runs"), "--task-options", "num_train=128", "--task-options", "num_dev=32",
                 "--task-options", "num_test=32", "--env-kwargs", "batch_size=16"]
    first = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "compare.py"), *arguments], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait_for(lambda: (out / "results.jsonl").exists(), "the first grid's first record", timeout=300)
        second = io.StringIO()
        with contextlib.redirect_stderr(second):
            try:
                cli(["compare", *arguments])
            except SystemExit as exit:
                code = exit.code
        first_code = first.wait(timeout=600)
    finally:
        first.kill()
    keys = [record.key for record in read_records(out / "results.jsonl")]
    if first_code != 0 or len(keys) != 12 or len(set(keys)) != 12:
        raise AssertionError(f"first grid: exit {first_code}, {len(keys)} records, {len(set(keys))} keys; expected 0, 12, 12")
    if code != 2 or "is in use" not in second.getvalue():
        raise AssertionError(f"second grid: exit {code}, {second.getvalue().strip()[-200:]}")
    return "the second refused at once (exit 2, results.jsonl is in use); the first wrote its 12 records, 12 distinct keys"


# ------------------------------------------------------------------------------------ cache cases
class TinyTextTask:
    """A tiny text task and its teachers in ``folder``; ``build()`` prepares (or reads) its data."""

    def __init__(self, folder: Path) -> None:
        """Writes the model and the data unless ``folder`` has them (another process wrote them)."""
        encoder, self.csv, self.cache = folder / "tiny-bert", folder / "reviews.csv", folder / "cache"
        self.encoder = str(encoder) if encoder.exists() else write_tiny_bert(encoder)
        if not self.csv.exists():
            write_csv(self.csv, sentiment_rows(160))

    def teachers(self) -> list[dict]:
        common = {"encoder": self.encoder, "epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "max_length": 16}
        return [{"name": "tiny-2", **common}, {"name": "tiny-1", "num_layers": 1, **common}]

    def build(self):
        options = {"cache_dir": str(self.cache), "semantic_encoder": self.encoder, "device": "cpu"}
        return build_distillation_data(f"csv:{self.csv}", self.teachers(), options)

    def teacher_entries(self) -> list[Path]:
        return sorted(p for p in (self.cache / "teachers").iterdir() if p.is_dir() and not p.name.startswith("."))


def rebuilt(task: TinyTextTask, damage: Callable[[Path], None]) -> str:
    """Damage the first teacher entry, rebuild, and check the env's data equals the undamaged data."""
    before = task.build().splits["train"].teacher_logits.clone()
    damage(task.teacher_entries()[0])
    WARNINGS.messages.clear()
    after = task.build().splits["train"].teacher_logits
    if not torch.equal(before, after):
        raise AssertionError("the rebuilt teacher outputs differ")
    warned = [m for m in WARNINGS.messages if "damaged" in m]
    if not warned:
        raise AssertionError("no warning")
    return f"rebuilt, same outputs; warning: {warned[0].split('(', 1)[-1].rsplit(')', 1)[0]}"


def truncate_array(entry: Path) -> None:
    array = entry / "train.logits.npy"
    array.write_bytes(array.read_bytes()[:-8])


def edit_meta(entry: Path) -> None:
    manifest = json.loads((entry / MANIFEST).read_text())
    manifest["meta"]["accuracy"]["test"] = 1.0
    (entry / MANIFEST).write_text(json.dumps(manifest))


def flip_manifest_key(entry: Path) -> None:
    manifest = entry / MANIFEST
    manifest.write_text(manifest.read_text().replace('"sha256"', '"sha257"', 1))


def drop_array(entry: Path) -> None:
    manifest = json.loads((entry / MANIFEST).read_text())
    manifest["arrays"].remove("train.pooled")
    del manifest["files"]["train.pooled.npy"]
    (entry / MANIFEST).write_text(json.dumps(manifest))
    (entry / "train.pooled.npy").unlink()


def case_truncated_teacher_array(folder: Path) -> str:
    return rebuilt(TinyTextTask(folder), truncate_array)


def case_edited_teacher_meta(folder: Path) -> str:
    return rebuilt(TinyTextTask(folder), edit_meta)


def case_damaged_manifest_key(folder: Path) -> str:
    return rebuilt(TinyTextTask(folder), flip_manifest_key)


def case_manifest_missing_an_array(folder: Path) -> str:
    return rebuilt(TinyTextTask(folder), drop_array)


def case_stale_staging_folder(folder: Path) -> str:
    task = TinyTextTask(folder)
    task.build()
    entry = task.teacher_entries()[0]
    stale = entry.parent / f".{entry.name}-killed"
    stale.mkdir()
    (stale / "train.logits.npy").write_bytes(b"half")
    (entry / MANIFEST).unlink()  # the entry is rebuilt: its builder clears what a killed one left
    task.build()
    if stale.exists():
        raise AssertionError("the stale staging folder is still there")
    return "removed by the next build of that entry"


# Prepares the tiny task's teachers and prints how many this process fine-tuned.
BUILD_AND_COUNT = """
from pathlib import Path
import fault_check
from kd_env.teachers import preparation as teachers
built, build = [], teachers._build_teacher
teachers._build_teacher = lambda *args, **kwargs: built.append(1) or build(*args, **kwargs)
fault_check.TinyTextTask(Path({folder!r})).build()
print(len(built))
"""


def case_two_processes_build_one_teacher(folder: Path) -> str:
    TinyTextTask(folder)
    code = BUILD_AND_COUNT.format(folder=str(folder))
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "scripts"), str(ROOT)])}
    processes = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  cwd=ROOT, env=environment) for _ in range(2)]
    builds = [int(process.communicate(timeout=300)[0].strip().splitlines()[-1]) for process in processes]
    if sorted(builds) != [0, 2]:
        raise AssertionError(f"teacher fine-tunings per process: {builds}, expected one process to build both")
    return "one process fine-tuned both teachers; the other waited and read them"


def case_damaged_encoder_build(folder: Path) -> str:
    path = Path(resolve_encoder("minilm-l3", folder))
    weights = path / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])
    WARNINGS.messages.clear()
    resolve_encoder("minilm-l3", folder)
    if weights.stat().st_size != size or not any("rebuilding it" in m for m in WARNINGS.messages):
        raise AssertionError("the truncated model.safetensors was not rebuilt with a warning")
    return "truncated model.safetensors: rebuilt, with a warning"


def case_batch_larger_than_task(folder: Path) -> str:
    import gymnasium as gym

    task = TinyTextTask(folder)
    started = time.perf_counter()
    outcome = expect_error(ValueError, lambda: gym.make("kd_env/TeacherSelection-v1", task=f"csv:{task.csv}", batch_size=512,
                                                        teachers=task.teachers(), task_options={"cache_dir": str(task.cache)}),
                           "is larger than the training split")
    if (task.cache / "teachers").exists():
        raise AssertionError("a teacher was prepared before the refusal")
    return f"{outcome} ({time.perf_counter() - started:.1f} s, no teacher prepared)"


def case_single_class_task(folder: Path) -> str:
    import gymnasium as gym

    task = TinyTextTask(folder)
    write_csv(task.csv, [row for row in sentiment_rows(160) if row["label"] == "pos"])
    return expect_error(ValueError, lambda: gym.make("kd_env/TeacherSelection-v1", task=f"csv:{task.csv}", batch_size=8,
                                                     teachers=task.teachers(), task_options={"cache_dir": str(task.cache)}),
                        "needs at least 2")


def case_latin_1_user_file(folder: Path) -> str:
    from kd_env.tasks import load_task

    path = folder / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9 good,pos\nbad film,neg\n".encode("latin-1"))
    return expect_error(ValueError, lambda: load_task(f"csv:{path}"), "encoding=latin-1")


CASES: dict[str, tuple[str, Callable[[Path], str]]] = {
    "sigterm": ("SIGTERM during train.py, then --resume", case_sigterm),
    "sigint": ("Ctrl-C (SIGINT) during train.py, then --resume", case_sigint),
    "sigkill": ("SIGKILL during train.py, then --resume", case_sigkill),
    "sigterm-early": ("SIGTERM before the first checkpoint, then --resume", case_sigterm_before_first_checkpoint),
    "student": ("truncated student.pt, then --resume", case_truncated_student),
    "agent": ("empty agent/ in the checkpoint, then --resume", case_missing_agent),
    "pickle": ("agent state.pt replaced by a pickle that runs a command", case_pickle_payload),
    "sb3-zip": ("agent.json renamed to ppo beside a model.zip that runs a command, then --resume", case_agent_renamed_to_sb3),
    "env-id": ("config.json's env_id naming a module (module:Env-v0), then --resume", case_env_id_naming_a_module),
    "results": ("torn last line of results.jsonl, then a new record", case_torn_results_line),
    "results-byte": ("a byte that is not UTF-8 in one line of results.jsonl", case_non_utf8_results_line),
    "two-grids": ("a second kd-env compare into the --out of a running one", case_two_grids_into_one_out),
    "array": ("truncated teacher array", case_truncated_teacher_array),
    "meta": ("edited teacher metadata (accuracy)", case_edited_teacher_meta),
    "manifest-key": ("one byte of a \"sha256\" key flipped in a teacher's manifest", case_damaged_manifest_key),
    "missing-array": ("teacher manifest without one of its arrays", case_manifest_missing_an_array),
    "staging": ("staging folder left by a killed build", case_stale_staging_folder),
    "concurrent": ("two processes prepare the same missing teachers", case_two_processes_build_one_teacher),
    "encoder": ("truncated weights of a built offline encoder (MiniLM-L3)", case_damaged_encoder_build),
    "batch": ("batch_size larger than the task's training split", case_batch_larger_than_task),
    "one-class": ("a user task with a single class", case_single_class_task),
    "encoding": ("a latin-1 csv read as utf-8", case_latin_1_user_file),
}


def run_case(name: str) -> tuple[bool, str, float]:
    """(passed, outcome with the case's temporary folder shown as TMP, seconds)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"fault-{name}-") as folder:
        try:
            outcome, ok = CASES[name][1](Path(folder)), True
        except Exception as error:  # noqa: BLE001 - a failed case is reported in the table, the others still run
            outcome, ok = f"FAILED: {type(error).__name__}: {error}", False
    return ok, outcome.replace(folder, "TMP"), time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="run only these cases")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger().addHandler(WARNINGS)  # the only handler: warnings go into outcomes, not onto the console
    print("| case | outcome | ok | s |\n|---|---|---|---|")
    failures = 0
    for name in args.only or CASES:
        ok, outcome, seconds = run_case(name)
        failures += not ok
        outcome = outcome.replace("|", "/")
        print(f"| {CASES[name][0]} | {outcome[:200]}{'...' if len(outcome) > 200 else ''} | {'yes' if ok else 'NO'} | {seconds:.0f} |", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
