"""Label budget and transfer set (task options ``labels`` and ``transfer``) on tiny synthetic and text data."""

import numpy as np
import pytest
import torch
from tiny_text import sentiment_rows, write_csv

from kd_env.tasks import SplitData, TaskConfig, load_task
from kd_env.tasks.budget import LabelBudget, budget_rows
from kd_env.tasks.dispatch import build_distillation_data
from kd_env.tasks.synthetic import build_synthetic_data
from kd_env.teachers import PreparationConfig, prepare_teachers, resolve_teacher_specs, teacher_description

SYNTHETIC = {"num_train": 300, "num_dev": 40, "num_test": 50, "num_classes": 3}


def synthetic(**options):
    return build_synthetic_data(options={**SYNTHETIC, **options})


# ------------------------------------------------------------------------------------------ rows
def test_budget_rows_are_stratified_nested_and_deterministic():
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    rows, labelled = budget_rows(labels, LabelBudget(100, 400), 3, seed=0, where="the pool")
    assert len(rows) == 500 and labelled.sum() == 100 and len(set(rows.tolist())) == 500
    np.testing.assert_array_equal(np.bincount(labels[rows]), [250, 150, 100])
    np.testing.assert_array_equal(np.bincount(labels[rows][labelled]), [50, 30, 20])
    again = budget_rows(labels, LabelBudget(100, 400), 3, seed=0, where="the pool")
    np.testing.assert_array_equal(again[0], rows)
    np.testing.assert_array_equal(again[1], labelled)
    # The same L + U gives the same rows; a larger budget labels a superset.
    more_rows, more_labelled = budget_rows(labels, LabelBudget(300, 200), 3, seed=0, where="the pool")
    np.testing.assert_array_equal(more_rows, rows)
    assert (labelled <= more_labelled).all()
    assert not np.array_equal(budget_rows(labels, LabelBudget(100, 400), 3, seed=1, where="the pool")[0], rows)


@pytest.mark.parametrize("budget, message", [
    (dict(labels=2), "fewer than the 3 classes"),
    (dict(labels=100, transfer=950), "= 1050 rows, but the pool has only 1000"),
    (dict(labels=3), "leaves classes \\[2\\] without a labelled row"),
])
def test_budget_rows_refuse_impossible_budgets(budget, message):
    labels = np.repeat([0, 1, 2], [600, 397, 3])
    with pytest.raises(ValueError, match=message):
        budget_rows(labels, LabelBudget(**budget), 3, seed=0, where="the pool")


@pytest.mark.parametrize("options, message", [
    ({"transfer": 10}, "needs a label budget"),
    ({"labels": 0}, "labels .* must be >= 1"),
    ({"labels": 2.5}, "labels.* must be an integer"),
    ({"labels": 10, "transfer": -1}, "transfer .* must be >= 0"),
])
def test_bad_budget_options_fail_before_any_data(options, message):
    with pytest.raises(ValueError, match=message):
        TaskConfig(**options)
    with pytest.raises(ValueError, match=message):
        synthetic(**options)


# ------------------------------------------------------------------------------------- synthetic
def test_synthetic_budget_keeps_labels_plus_transfer_rows_and_the_other_splits():
    data = synthetic(labels=30, transfer=120)
    train = data.splits["train"]
    assert len(train) == 150 and train.labelled.dtype == torch.bool and int(train.labelled.sum()) == 30
    assert train.teacher_logits.shape[0] == train.semantic.shape[0] == train.expert_mask.shape[0] == 150
    assert np.bincount(train.labels[train.labelled].numpy(), minlength=3).min() >= 1
    full = synthetic()
    assert full.splits["train"].labelled is None
    for split in ("dev", "test"):
        assert data.splits[split].labelled is None
        assert torch.equal(data.splits[split].teacher_logits, full.splits[split].teacher_logits)
    again = synthetic(labels=30, transfer=120)
    assert torch.equal(again.splits["train"].labelled, train.labelled)
    assert torch.equal(again.splits["train"].student_inputs["features"], train.student_inputs["features"])


def test_synthetic_annotation_noise_lands_on_labelled_rows_only():
    """Nobody annotated the transfer rows: their hidden label is the clean one, whatever label_noise says."""
    clean = synthetic(labels=60, transfer=240)
    noisy = synthetic(labels=60, transfer=240, label_noise=0.5)
    mask = clean.splits["train"].labelled
    assert torch.equal(noisy.splits["train"].labels[~mask], clean.splits["train"].labels[~mask])
    assert not torch.equal(noisy.splits["train"].labels[mask], clean.splits["train"].labels[mask])


def test_split_data_checks_the_labelled_mask():
    base = synthetic().splits["train"]
    n = len(base)
    fields = dict(labels=base.labels, student_inputs=base.student_inputs, semantic=base.semantic,
                  teacher_logits=base.teacher_logits, raw_teacher_ce=base.raw_teacher_ce)
    SplitData(**fields, labelled=torch.arange(n) % 2 == 0).validate("train", 3, 4)
    assert SplitData(**fields).label_mask().all()
    for bad, message in ((torch.ones(n, dtype=torch.long), "expected bool"), (torch.ones(n - 1, dtype=torch.bool), "expected bool"),
                         (torch.zeros(n, dtype=torch.bool), "no row is labelled")):
        with pytest.raises(ValueError, match=message):
            SplitData(**fields, labelled=bad).validate("train", 3, 4)


# ------------------------------------------------------------------------------------------ text
@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("budget") / "reviews.csv", sentiment_rows(240))


def test_text_budget_draws_the_students_rows_outside_the_teachers_data(reviews):
    base = load_task(f"csv:{reviews}", TaskConfig(max_train=80))
    task = load_task(f"csv:{reviews}", TaskConfig(max_train=80, labels=12, transfer=60))
    train = task.splits["train"]
    assert len(train) == 72 and task.labelled.sum() == 12
    assert task.teacher_train.texts == base.splits["train"].texts == base.teacher_data.texts
    assert not set(train.texts) & set(task.teacher_train.texts)
    for split in ("dev", "test"):
        assert task.splits[split].texts == base.splits[split].texts
    shares = np.bincount(train.labels[task.labelled], minlength=3)
    assert shares.min() >= 1 and shares.max() - shares.min() <= 3  # the reviews' classes are about even
    again = load_task(f"csv:{reviews}", TaskConfig(max_train=80, labels=12, transfer=60))
    assert again.splits["train"].texts == train.texts
    np.testing.assert_array_equal(again.labelled, task.labelled)


def test_text_fingerprint_follows_the_rows_not_the_mask(reviews):
    def fingerprint(**options):
        return load_task(f"csv:{reviews}", TaskConfig(max_train=80, **options)).fingerprint()

    base = fingerprint()
    assert len({base, fingerprint(labels=12, transfer=60), fingerprint(labels=12, transfer=40)}) == 3
    # No cached array depends on which rows are labelled: budgets with the same rows share their cache.
    assert fingerprint(labels=12, transfer=60) == fingerprint(labels=30, transfer=42)


def test_text_budget_larger_than_the_rest_names_max_train(reviews):
    with pytest.raises(ValueError, match="less the teachers' own 192 instances, has only 0; lower max_train"):
        load_task(f"csv:{reviews}", TaskConfig(labels=10, transfer=5))
    with pytest.raises(ValueError, match="fewer than the 3 classes"):
        load_task(f"csv:{reviews}", TaskConfig(max_train=80, labels=2))


def test_teachers_train_on_their_own_data_whatever_the_budget(tmp_path, tiny_bert, reviews):
    """A head teacher on a cluster slice: the same training (its dev and test outputs are identical) with and
    without a budget, another cache entry, and outputs on every one of the student's L + U rows."""
    config = PreparationConfig(cache_dir=str(tmp_path), semantic_encoder=tiny_bert, device="cpu")
    specs = resolve_teacher_specs([{"name": "t", "encoder": tiny_bert, "tuning": "head", "slice": "cluster:2:0", "epochs": 3,
                                    "batch_size": 8, "learning_rate": 1e-2, "max_length": 16}])
    base = load_task(f"csv:{reviews}", TaskConfig(max_train=80))
    task = load_task(f"csv:{reviews}", TaskConfig(max_train=80, labels=12, transfer=60))
    assert teacher_description(base, specs[0], config) != teacher_description(task, specs[0], config)
    base_cache, cache = prepare_teachers(base, specs, config), prepare_teachers(task, specs, config)
    for split in ("dev", "test"):
        torch.testing.assert_close(cache.outputs(split).logits, base_cache.outputs(split).logits)
    assert cache.outputs("train").logits.shape[0] == 72


def test_text_data_carries_the_labelled_mask_on_the_train_split(tmp_path, tiny_bert, reviews):
    options = {"cache_dir": str(tmp_path), "semantic_encoder": tiny_bert, "device": "cpu", "max_train": 80, "labels": 12, "transfer": 60}
    spec = {"name": "t", "encoder": tiny_bert, "tuning": "head", "epochs": 1, "batch_size": 8, "max_length": 16}
    data = build_distillation_data(f"csv:{reviews}", [spec], options)
    train = data.splits["train"]
    assert len(train) == 72 and int(train.labelled.sum()) == 12
    assert data.splits["dev"].labelled is None and data.splits["test"].labelled is None
