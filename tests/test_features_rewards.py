import numpy as np
import pytest

from kd_env.features import (
    FEATURE_GROUPS,
    FeatureLayout,
    SemanticProjection,
    StaticFeatureChunks,
    dynamic_features,
    log_softmax,
    static_features,
    validate_groups,
)
from kd_env.rewards import GAIN_SCALE, StepLosses, get_reward, instance_rewards


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
    dynamic = dynamic_features(layout, log_probs, log_softmax(rng.normal(size=(n, c))), labels, 0.5)
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


def test_static_feature_chunks_equal_per_batch_features():
    rng = np.random.default_rng(2)
    layout = make_layout()
    n, k, c, b, steps = 40, 2, 3, 4, 9
    teacher_logits = rng.normal(size=(n, k, c)).astype(np.float32)
    semantic = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    labels = rng.integers(0, c, n)
    batches = rng.integers(0, n, size=(steps, b))
    chunks = StaticFeatureChunks(layout, teacher_logits, semantic, batches, labels[batches], chunk_steps=4)
    for step in [0, 3, 4, 8, 2]:  # inside a chunk, across chunk borders, back to an earlier one
        static, log_probs = chunks(step)
        batch = batches[step]
        expected_log_probs = log_softmax(teacher_logits[batch].astype(np.float64))
        np.testing.assert_allclose(log_probs, expected_log_probs)
        np.testing.assert_array_equal(static, static_features(layout, expected_log_probs, labels[batch], semantic[batch]))


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
        get_reward("accuracy")
