"""Checkpoint teachers: a user's fine-tuned classifier folder, used as is, mapped to the task's classes,
cached by content hash."""

from pathlib import Path

import pytest
import torch
from tiny_checkpoints import write_tiny_classifier
from tiny_text import sentiment_rows, write_csv

from kd_env.teachers import checkpoints as checkpoint_teachers
from kd_env.teachers.checkpoints import label_columns
from kd_env.tasks import load_task
from kd_env.teachers import PreparationConfig, prepare_teachers, resolve_teacher_specs


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return load_task(f"csv:{write_csv(tmp_path_factory.mktemp('data') / 'reviews.csv', sentiment_rows(90))}")


def test_labels_map_by_name_case_and_transformers_default():
    assert label_columns({0: "pos", 1: "neg", 2: "neu"}, ("neg", "neu", "pos"), "t") == [1, 2, 0]
    assert label_columns({0: "NEG", 1: "Pos"}, ("neg", "pos"), "t") == [0, 1]
    assert label_columns({0: "LABEL_0", 1: "LABEL_1"}, ("0", "1"), "t") == [0, 1]
    with pytest.raises(ValueError, match=r"its labels \['LABEL_0', 'LABEL_1'\] do not match the task's classes \['neg', 'pos'\]"):
        label_columns({0: "LABEL_0", 1: "LABEL_1"}, ("neg", "pos"), "t")


def test_checkpoint_teacher_runs_as_is_reordered_and_cached(tmp_path, task, monkeypatch):
    folder = write_tiny_classifier(tmp_path / "my-teacher", ["pos", "neu", "neg"])
    specs = resolve_teacher_specs([folder])
    assert specs[0].name == "my-teacher"
    config = PreparationConfig(cache_dir=str(tmp_path / "cache"), device="cpu")
    cache = prepare_teachers(task, specs, config)
    logits = cache.outputs("dev").logits[:, 0]

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    text = task.splits["dev"].texts[0]
    with torch.no_grad():
        direct = model(**tokenizer([text], return_tensors="pt")).logits[0]
    torch.testing.assert_close(logits[0], direct[[2, 1, 0]], atol=1e-5, rtol=1e-4)  # task order neg, neu, pos

    monkeypatch.setattr(checkpoint_teachers, "_run_checkpoint", lambda *a: pytest.fail("a cached checkpoint was run again"))
    prepare_teachers(task, resolve_teacher_specs([{"checkpoint": folder, "name": "mine"}]), config)
    write_tiny_classifier(tmp_path / "my-teacher", ["pos", "neu", "neg"], seed=1)  # new weights: a new key
    with pytest.raises(pytest.fail.Exception, match="run again"):
        prepare_teachers(task, specs, config)


def test_bad_checkpoints_fail_before_any_teacher_runs(tmp_path, task, monkeypatch):
    with pytest.raises(FileNotFoundError, match="checkpoint folder .*missing does not exist"):
        resolve_teacher_specs([str(tmp_path / "missing")])
    good = write_tiny_classifier(tmp_path / "good", ["neg", "neu", "pos"])
    wrong = write_tiny_classifier(tmp_path / "wrong", ["negative", "neutral", "positive"])
    monkeypatch.setattr(checkpoint_teachers, "_run_checkpoint", lambda *a: pytest.fail("a teacher ran"))
    with pytest.raises(ValueError, match=r"'wrong'.*\['negative', 'neutral', 'positive'\] do not match the task's classes \['neg', 'neu', 'pos'\]"):
        prepare_teachers(task, resolve_teacher_specs([good, wrong]), PreparationConfig(cache_dir=str(tmp_path / "cache"), device="cpu"))


def test_a_folder_without_a_tokenizer_is_refused_in_one_line(tmp_path):
    folder = Path(write_tiny_classifier(tmp_path / "no-tokenizer", ["neg", "neu", "pos"]))
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(ValueError, match="has no tokenizer vocabulary") as error:
        resolve_teacher_specs([str(folder)])
    assert "\n" not in str(error.value)
