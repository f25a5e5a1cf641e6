"""End to end: `kd-env distill` with tiny checkpoint teachers and tiny students, on a made-up CSV; the
transformer student then runs in `transformers.pipeline`, the head student through `kd_env.load_student`."""

import json

import pytest
from tiny_checkpoints import write_tiny_classifier
from tiny_text import WORDS, sentiment_rows, write_csv, write_tiny_bert
from typer.testing import CliRunner

import kd_env
from kd_cli.app import app

runner = CliRunner()
pytestmark = pytest.mark.integration  # end to end: fine-tunes teachers and distils students

CLASSES = {"neg", "neu", "pos"}


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    teachers = [write_tiny_classifier(root / "teacher-a", ["neg", "neu", "pos"], seed=0),
                write_tiny_classifier(root / "teacher-b", ["POS", "NEG", "NEU"], seed=1)]  # mapped by name
    encoder = write_tiny_bert(root / "encoder", num_layers=1)
    data = write_csv(root / "reviews.csv", sentiment_rows(120))
    common = ["--task", f"csv:{data}", "--teacher", teachers[0], "--teacher", teachers[1], "--epochs", "1",
              "--task-options", json.dumps({"cache_dir": str(root / "cache"), "semantic_encoder": encoder, "device": "cpu"}),
              "--env-kwargs", "batch_size=16"]
    return root, encoder, common


def test_distill_transformer_student_loads_in_a_pipeline(setting):
    root, encoder, common = setting
    config = {"model_type": "bert", "vocab_size": len(WORDS) + 5, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 64}
    out = root / "student"
    args = ["distill", *common, "--student", "transformer", "--student-options", json.dumps({"config": config, "tokenizer": encoder}),
            "--agent", "reinforce", "--epochs", "2", "--compare-avg", "--out", str(out)]  # reinforce needs 2 epochs: 1 of Avg-KD, 1 joint
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + str(result.exception)
    assert "selection profile" in result.stderr and "reinforce:" in result.stderr  # progress bars, not silence

    from transformers import pipeline

    classify = pipeline("text-classification", model=str(out))
    assert classify("the film was very good")[0]["label"] in CLASSES
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "teacher-b" in card and "avg_kd" in card and "selected when right" in card
    summary = json.loads((out / "distill.json").read_text())
    assert set(summary["runs"]) == {"reinforce", "avg_kd"} and set(summary["teachers"]) == {"teacher-a", "teacher-b"}
    assert summary["spec"]["student_options"]["config"] == config and summary["spec"]["profile"] == "recommended"
    assert summary["settings"]["batch_size"] == 16 and summary["student_size"]["parameters"] > 0
    assert summary["student_size"]["ms_per_text"] > 0 and "ms per text" in card and "Settings profile `recommended`" in card
    from experiments.distill import DistillSpec

    assert DistillSpec.from_file(out / "distill.json", {"out": str(root / "again")}).replace(out=str(out)) == DistillSpec(**{
        **summary["spec"], "teachers": tuple(summary["spec"]["teachers"])})  # the record re-runs as it was
    assert list((out / "runs").glob("*/events.out.tfevents.*"))
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.stderr


def test_distill_head_student_loads_with_kd_env(setting):
    root, _, common = setting
    out = root / "head"
    result = runner.invoke(app, ["distill", *common, "--student", "head", "--agent", "avg_kd", "--out", str(out)])
    assert result.exit_code == 0, result.output + str(result.exception)
    student = kd_env.load_student(out)
    predictions = student.predict(["the film was very good", "awful food"])
    assert len(predictions) == 2 and set(predictions) <= CLASSES
    assert student.predict_proba(["meh"]).sum().item() == pytest.approx(1.0)


def test_distill_refuses_checkpoint_with_other_labels(setting, tmp_path):
    _, _, common = setting
    wrong = write_tiny_classifier(tmp_path / "wrong", ["LABEL_0", "LABEL_1", "LABEL_2"])
    result = runner.invoke(app, ["distill", *common, "--teacher", wrong, "--student", "head", "--agent", "avg_kd", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "do not match the task's classes ['neg', 'neu', 'pos']" in result.stderr
    assert not (tmp_path / "out").exists()


def test_prepare_prints_checkpoint_teachers(setting):
    _, _, common = setting
    options = common[common.index("--task-options") + 1]
    result = runner.invoke(app, ["prepare", "--task", common[1], "--teacher", common[3], "--task-options", options])
    assert result.exit_code == 0, result.output
    assert "| teacher-a |" in result.output
