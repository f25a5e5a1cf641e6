import numpy as np
import pytest

from kd_env.features import FEATURE_GROUPS, FeatureLayout, SemanticProjection, dynamic_features, static_features, validate_groups
from kd_env.rewards import GAIN_SCALE, StepLosses, instance_rewards, validate_reward


def make_layout(groups=FEATURE_GROUPS):
    return FeatureLayout(validate_groups(list(groups)), ("a", "b", "c"), ("t0", "t1"), 2)


def test_feature_names_match_widths_and_bounds():
    rng = np.random.default_rng(0)
    layout = make_layout()
    n, k, c = 5, 2, 3
    logits = rng.normal(size=(n, k, c)) * 5
    log_probs = np.log(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))
    labels = rng.integers(0, c, n)
    semantic = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    static = static_features(layout, log_probs, labels, semantic)
    dynamic = dynamic_features(layout, log_probs, rng.normal(size=(n, c)), labels, 0.5)
    features = np.concatenate([static, dynamic], axis=-1)
    assert features.shape == (n, k, layout.size) == (n, k, len(layout.names))
    assert features.dtype == np.float32
    assert np.all(features >= layout.lower_bounds()) and np.all(features <= 1.0)
    names = layout.names
    # teacher_correct agrees with argmax == label, teacher_id is one-hot of k.
    correct = features[..., names.index("teacher_correct")]
    assert np.array_equal(correct, (logits.argmax(-1) == labels[:, None]).astype(np.float32))
    assert np.array_equal(features[:, 1, names.index("teacher_id[t1]")], np.ones(n, dtype=np.float32))
    assert np.all(features[..., names.index("progress")] == 0.5)


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
        ce_before=np.array([1.0, 2.0]), ce_after=np.array([0.5, 1.0]), loss_after=np.array([0.6, 1.2]),
        probe_ce_before=1.0, probe_ce_after=0.9,
    )
    log_c = np.log(4)
    assert np.allclose(instance_rewards("student_ce", losses, 4), [-0.5 / log_c, -1.0 / log_c])
    assert np.allclose(instance_rewards("student_loss", losses, 4), [-0.6 / log_c, -1.2 / log_c])
    assert np.allclose(instance_rewards("ce_gain", losses, 4), np.array([0.5, 1.0]) / log_c * GAIN_SCALE)
    assert np.allclose(instance_rewards("dev_gain", losses, 4), 0.1 / log_c * GAIN_SCALE)
    with pytest.raises(ValueError, match="student_ce"):
        validate_reward("accuracy")
