import numpy as np
import pytest
import torch

from kd_env.features import FEATURE_GROUPS, FeatureLayout, FeatureTable, SemanticProjection, validate_groups
from kd_env.rewards import GAIN_SCALE, StepLosses, get_reward, instance_rewards


def make_layout(groups=FEATURE_GROUPS):
    return FeatureLayout(validate_groups(list(groups)), ("a", "b", "c"), ("t0", "t1"), 2)


def random_table(layout, n=5, k=2, c=3, seed=0, labelled=None):
    rng = np.random.default_rng(seed)
    logits = torch.tensor(rng.normal(size=(n, k, c)) * 5, dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, c, n))
    semantic = torch.tensor(rng.uniform(-1, 1, size=(n, 2)), dtype=torch.float32)
    labelled = torch.ones(n, dtype=torch.bool) if labelled is None else labelled
    return FeatureTable(layout, logits, labels, labelled, semantic), logits, labels


def test_feature_names_match_widths_and_bounds():
    layout = make_layout()
    n, k, c = 5, 2, 3
    table, logits, labels = random_table(layout, n, k, c)
    student_log_probs = torch.log_softmax(torch.randn(n, c, generator=torch.Generator().manual_seed(1)), dim=-1)
    features = table.for_episode(torch.arange(n)[None]).observation(0, student_log_probs, 0.5).numpy()
    assert features.shape == (n, k, layout.size) == (n, k, len(layout.names))
    assert features.dtype == np.float32
    assert np.all(features >= layout.lower_bounds()) and np.all(features <= 1.0)
    names = layout.names
    # teacher_correct agrees with argmax == label, teacher_id is one-hot of k.
    correct = features[..., names.index("teacher_correct")]
    assert np.array_equal(correct, (logits.argmax(-1) == labels[:, None]).numpy().astype(np.float32))
    assert np.array_equal(features[:, 1, names.index("teacher_id[t1]")], np.ones(n, dtype=np.float32))
    assert np.all(features[..., names.index("progress")] == 0.5)
    # KL(teacher || student) as its definition gives it.
    teacher_log_probs = torch.log_softmax(logits.double(), dim=-1)
    kl = (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs.double().unsqueeze(1))).sum(-1)
    np.testing.assert_allclose(features[..., names.index("kl_teacher_student")], (kl / (1 + kl)).numpy(), rtol=1e-5)


def test_gathered_rows_equal_the_table_made_for_those_rows():
    layout = make_layout()
    table, logits, labels = random_table(layout, n=40, seed=2)
    rows = torch.tensor([7, 3, 3, 39, 0])
    student_log_probs = torch.log_softmax(torch.randn(5, 3), dim=-1)
    semantic = table.table[:, :, [layout.names.index("semantic[0]"), layout.names.index("semantic[1]")]][:, 0]
    alone = FeatureTable(layout, logits[rows], labels[rows], torch.ones(5, dtype=torch.bool), semantic[rows])
    torch.testing.assert_close(table.for_episode(rows[None]).observation(0, student_log_probs, 0.25),
                               alone.for_episode(torch.arange(5)[None]).observation(0, student_log_probs, 0.25))


def test_label_reading_features_are_zero_without_a_label():
    layout = make_layout()
    labelled = torch.tensor([True, False, True, False, True])
    table, *_ = random_table(layout, labelled=labelled)
    features = table.for_episode(torch.arange(5)[None]).observation(0, torch.log_softmax(torch.randn(5, 3), dim=-1), 0.5)
    for group in ("teacher_ce", "teacher_correct", "student_ce"):
        column = features[..., layout.names.index(group)]
        assert torch.all(column[~labelled] == 0) and torch.any(column[labelled] > 0), group


def test_unknown_feature_group_lists_available():
    with pytest.raises(ValueError, match="teacher_probs"):
        validate_groups(["nonsense"])


def test_semantic_projection_is_bounded_and_deterministic():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(50, 6)) * 10
    a, b = SemanticProjection.fit(train, 3), SemanticProjection.fit(train.copy(), 3)
    out = a(rng.normal(size=(7, 6)) * 100)
    assert out.shape == (7, 3) and np.all(np.abs(out) <= 1.0)
    assert np.array_equal(a(train), b(train))
    assert SemanticProjection.fit(train, 9)(train).shape == (50, 9)  # padded past the input dim


def test_rewards():
    losses = StepLosses(
        ce_before=torch.tensor([1.0, 2.0]), ce_after=torch.tensor([0.5, 1.0]), loss_after=torch.tensor([0.6, 1.2]),
        probe_ce_before=torch.tensor([1.0]), probe_ce_after=torch.tensor([0.9]),
    )
    log_c = np.log(4)
    assert np.allclose(instance_rewards("student_ce", losses, 4), [-0.5 / log_c, -1.0 / log_c])
    assert np.allclose(instance_rewards("student_loss", losses, 4), [-0.6 / log_c, -1.2 / log_c])
    assert np.allclose(instance_rewards("ce_gain", losses, 4), np.array([0.5, 1.0]) / log_c * GAIN_SCALE)
    assert np.allclose(instance_rewards("dev_gain", losses, 4), 0.1 / log_c * GAIN_SCALE)
    with pytest.raises(ValueError, match="student_ce"):
        get_reward("accuracy")
