import json

from experiments.results import RunRecord, append_record, completed_keys, read_records, run_key


def record(seed, status="ok", **config):
    return RunRecord(
        entry="avg_kd", task="synthetic", seed=seed, student="head", teachers=["a", "b"],
        test_accuracy=0.7 if status == "ok" else None, test_macro_f1=0.6 if status == "ok" else None,
        dev_accuracy=0.7 if status == "ok" else None, env_steps=100, wall_time_s=1.5, config=config,
        status=status, error=None if status == "ok" else "ValueError: boom",
    )


def test_append_read_and_skip_completed(tmp_path):
    path = tmp_path / "results.jsonl"
    append_record(path, record(0, lr=1))
    append_record(path, record(1, status="failed", lr=1))
    with path.open("a") as handle:
        handle.write('{"entry": "avg_kd", "task": "synth')  # a line cut short by an interruption
    records = read_records(path)
    assert [r.seed for r in records] == [0, 1]
    assert records[0] == record(0, lr=1)
    # Finished runs are skipped on a re-run; failed ones are retried; the config is part of the key.
    assert completed_keys(path) == {run_key("avg_kd", "synthetic", 0, {"lr": 1})}
    assert run_key("avg_kd", "synthetic", 0, {"lr": 1}) != run_key("avg_kd", "synthetic", 0, {"lr": 2})


def test_record_after_a_torn_line_is_kept(tmp_path, caplog):
    path = tmp_path / "results.jsonl"
    append_record(path, record(0))
    with path.open("a") as handle:
        handle.write('{"entry": "avg_kd", "task": "synth')  # a crash mid-write
    append_record(path, record(1))
    append_record(path, record(2))
    assert [r.seed for r in read_records(path)] == [0, 1, 2]
    assert [r.message for r in caplog.records if "skipping unreadable line 2" in r.message]


def test_a_line_with_a_byte_that_is_not_utf8_loses_only_itself(tmp_path, caplog):
    path = tmp_path / "results.jsonl"
    append_record(path, record(0))
    append_record(path, record(1))
    append_record(path, record(2))
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"avg_kd", b"avg\xffkd")
    path.write_bytes(b"\n".join(lines))
    assert [r.seed for r in read_records(path)] == [0, 2]
    assert "skipping unreadable line 2" in caplog.text


def test_a_line_that_is_json_but_not_a_record_loses_only_itself(tmp_path, caplog):
    path = tmp_path / "results.jsonl"
    path.write_text("[1, 2]\n")
    append_record(path, record(0))
    assert [r.seed for r in read_records(path)] == [0]
    assert "skipping unreadable line 1" in caplog.text


def test_a_file_written_before_the_rename_still_loads_and_its_runs_still_count(tmp_path):
    # A line as results files held it when the entry label was stored under "agent".
    legacy = {"agent": "single:minilm-l6", "task": "synthetic", "seed": 0, "student": "head", "teachers": ["a"],
              "test_accuracy": 0.7, "test_macro_f1": 0.6, "dev_accuracy": 0.7, "env_steps": 10, "wall_time_s": 1.0,
              "config": {"lr": 1}, "status": "ok", "error": None, "teacher_test_accuracy": {}, "curves": {}, "selection": {}}
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(legacy, sort_keys=True) + "\n")
    [old] = read_records(path)
    assert old.entry == "single:minilm-l6"
    # The key's text is what it was (label|task|seed|config hash), so the run is not redone.
    assert old.key == "single:minilm-l6|synthetic|0|1efe365887b5"
    assert completed_keys(path) == {run_key("single:minilm-l6", "synthetic", 0, {"lr": 1})}
    append_record(path, record(1))  # new lines go out under "entry"; both kinds read back together
    assert '"entry": "avg_kd"' in path.read_text().splitlines()[1]
    assert [r.entry for r in read_records(path)] == ["single:minilm-l6", "avg_kd"]


def test_missing_file_has_no_records(tmp_path):
    assert read_records(tmp_path / "none.jsonl") == [] and completed_keys(tmp_path / "none.jsonl") == set()
