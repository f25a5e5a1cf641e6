"""The synthetic task's label-noise variant: noisy training labels, clean dev/test, teachers untouched."""

import pytest
import torch

from kd_env.tasks.synthetic import build_synthetic_data

SIZES = {"num_train": 200, "num_dev": 40, "num_test": 40}


def test_no_noise_is_the_original_task():
    plain, zero = build_synthetic_data(options=SIZES), build_synthetic_data(options={**SIZES, "label_noise": 0.0})
    for split in plain.splits:
        assert torch.equal(plain.splits[split].labels, zero.splits[split].labels)
        assert torch.equal(plain.splits[split].teacher_logits, zero.splits[split].teacher_logits)


def test_noise_flips_a_share_of_training_labels_only():
    clean, noisy = build_synthetic_data(options=SIZES), build_synthetic_data(options={**SIZES, "label_noise": 0.3})
    changed = clean.splits["train"].labels != noisy.splits["train"].labels
    assert int(changed.sum()) == 60  # exactly the share, each to a different class
    for split in ("dev", "test"):  # the student is judged on clean labels
        assert torch.equal(clean.splits[split].labels, noisy.splits[split].labels)
    for split in noisy.splits:  # teachers (and their experts) know the clean posterior either way
        assert torch.equal(clean.splits[split].teacher_logits, noisy.splits[split].teacher_logits)
        assert torch.equal(clean.splits[split].expert_mask, noisy.splits[split].expert_mask)
    # Teacher CE is against the gold label the env sees: the noisy one.
    train = noisy.splits["train"]
    expected = torch.nn.functional.cross_entropy(
        train.teacher_logits.flatten(0, 1), train.labels.repeat_interleave(train.teacher_logits.shape[1]), reduction="none"
    ).view_as(train.raw_teacher_ce)
    assert torch.allclose(train.raw_teacher_ce, expected, atol=1e-5)


def test_experts_agree_with_clean_labels_more_than_with_noisy_ones():
    data = build_synthetic_data(options={"num_train": 2000, "num_dev": 1000, "num_test": 8, "label_noise": 0.4})
    train, dev = data.splits["train"], data.splits["dev"]
    assert train.teacher_correct()[train.expert_mask].float().mean() < 0.6  # measured 0.50
    assert dev.teacher_correct()[dev.expert_mask].float().mean() > 0.7  # measured 0.80


@pytest.mark.parametrize("noise", [-0.1, 1.0, 1.5])
def test_noise_outside_the_unit_interval_is_refused(noise):
    with pytest.raises(ValueError, match="label_noise must be in"):
        build_synthetic_data(options={**SIZES, "label_noise": noise})
