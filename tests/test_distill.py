import math

import numpy as np
import pytest
import torch

from kd_env import distill
from kd_env.distill import KDConfig, aggregation_names, kd_loss, kd_loss_and_logit_gradient, normalise_weights, soft_targets


def test_selection_weights_average_and_fall_back():
    selection = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    hard = normalise_weights(selection, "hard_label")
    assert hard.dtype == torch.float32
    np.testing.assert_allclose(hard, [[0.5, 0.0, 0.5], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    every = normalise_weights(selection, "all_teachers")
    np.testing.assert_allclose(every[1], np.full(3, 1 / 3), rtol=1e-6)
    np.testing.assert_allclose(every[[0, 2]], hard[[0, 2]])
    np.testing.assert_array_equal(selection, [[1, 0, 1], [0, 0, 0], [0, 1, 0]])  # the action is not changed


def test_normalise_weights_per_instance():
    scores = np.array([[0.2, 0.6], [0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(normalise_weights(scores), [[0.25, 0.75], [0.0, 0.0]])
    np.testing.assert_allclose(normalise_weights(scores, "all_teachers"), [[0.25, 0.75], [0.5, 0.5]])
    with pytest.raises(ValueError, match="hard_label"):
        normalise_weights(scores, "nobody")


@pytest.mark.parametrize("empty", ["hard_label", "all_teachers"])
def test_tiny_weights_are_an_empty_selection(empty):
    scores = np.array([[1e-30, 1e-30, 0.0], [0.2, 0.0, 0.0]], dtype=np.float32)
    weights = normalise_weights(scores, empty)
    expected_empty = [0.0, 0.0, 0.0] if empty == "hard_label" else [1 / 3] * 3
    np.testing.assert_allclose(weights, [expected_empty, [1.0, 0.0, 0.0]], rtol=1e-6)
    parts = kd_loss(torch.zeros(2, 3), torch.tensor([0, 1]), torch.randn(2, 3, 3), weights, KDConfig())
    if empty == "hard_label":  # the hard label only, at full weight
        assert parts.total[0].item() == pytest.approx(parts.ce[0].item())


def test_tiny_weights_count_as_no_teacher_in_the_env(small_env_kwargs):
    import gymnasium as gym

    import kd_env  # noqa: F401 - registers the env ids

    env = gym.make("kd_env/TeacherWeighting-v1", **small_env_kwargs)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.full(env.action_space.shape, 1e-30, dtype=np.float32))
    assert info["selection_rate"].tolist() == [0.0] * env.unwrapped.num_teachers
    assert info["loss"] == pytest.approx(info["ce"])


def test_kd_loss_matches_hand_computation():
    # One instance, two classes, two teachers; tau = 1 so soft CE is plain CE against teacher probs.
    student = torch.tensor([[0.0, math.log(3.0)]])  # p_S = (0.25, 0.75)
    teachers = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])  # (0.5, 0.5) and (0.75, 0.25)
    weights = torch.tensor([[0.5, 0.5]])
    label = torch.tensor([1])
    config = KDConfig(alpha=0.4, temperature=1.0)
    ce = -math.log(0.75)
    kd_t1 = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    kd_t2 = -(0.75 * math.log(0.25) + 0.25 * math.log(0.75))
    kd = 0.5 * kd_t1 + 0.5 * kd_t2
    out = kd_loss(student, label, teachers, weights, config)
    assert out.ce.item() == pytest.approx(ce, rel=1e-6)
    assert out.kd.item() == pytest.approx(kd, rel=1e-6)
    assert out.total.item() == pytest.approx(0.6 * ce + 0.4 * kd, rel=1e-6)


def test_kl_to_average_and_tau_squared():
    student = torch.tensor([[0.0, 0.0]])  # uniform at any temperature
    teachers = torch.tensor([[[2.0, 0.0], [0.0, 2.0]]])
    weights = torch.tensor([[0.5, 0.5]])
    # Symmetric teachers average to uniform: KL(uniform || uniform) = 0.
    out = kd_loss(student, torch.tensor([0]), teachers, weights, KDConfig(aggregation="kl_to_average"))
    assert out.kd.item() == pytest.approx(0.0, abs=1e-6)
    plain = kd_loss(student, torch.tensor([0]), teachers, weights, KDConfig(temperature=2.0))
    squared = kd_loss(student, torch.tensor([0]), teachers, weights, KDConfig(temperature=2.0, tau_squared=True))
    assert squared.kd.item() == pytest.approx(4.0 * plain.kd.item(), rel=1e-6)


def test_empty_selection_trains_on_hard_label_only():
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    teachers = torch.randn(2, 3, 2)
    weights = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    out = kd_loss(student, torch.tensor([0, 1]), teachers, weights, KDConfig(alpha=0.7))
    assert out.total[0].item() == pytest.approx(out.ce[0].item())
    assert out.total[1].item() == pytest.approx(0.3 * out.ce[1].item() + 0.7 * out.kd[1].item())


@pytest.mark.parametrize(
    "kwargs, message",
    [({"alpha": 1.5}, "alpha"), ({"temperature": 0.0}, "temperature"), ({"aggregation": "max"}, "aggregation")],
)
def test_bad_kd_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KDConfig(**kwargs)


def _autograd_logit_gradient(logits, labels, teachers, weights, config, scale, labelled=None):
    leaf = logits.clone().requires_grad_()
    (kd_loss(leaf, labels, teachers, weights, config, labelled).total.sum() * scale).backward()
    return leaf.grad


@pytest.mark.parametrize("aggregation", aggregation_names())
@pytest.mark.parametrize("tau_squared", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("labelled", [None, [True, False, False, True, True, False]])
def test_written_out_logit_gradient_matches_autograd(aggregation, tau_squared, alpha, labelled):
    """Every registered aggregation, with and without a written-out gradient, with instances that have
    no teacher (hard label only) among those that have one or several, with and without labels."""
    labelled = None if labelled is None else torch.tensor(labelled)
    generator = torch.Generator().manual_seed(0)
    logits, teachers = torch.randn(6, 3, generator=generator), torch.randn(6, 4, 3, generator=generator) * 2
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    weights = normalise_weights(np.array([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0], [0.2, 0.7, 0, 0.1]]))
    config = KDConfig(alpha=alpha, temperature=1.7, tau_squared=tau_squared, aggregation=aggregation)
    parts, gradient = kd_loss_and_logit_gradient(logits, labels, soft_targets(teachers, config), weights, config, 0.25, labelled)
    expected = kd_loss(logits, labels, teachers, weights, config, labelled)
    for name in ("total", "ce", "kd"):
        torch.testing.assert_close(getattr(parts, name), getattr(expected, name))
    torch.testing.assert_close(gradient, _autograd_logit_gradient(logits, labels, teachers, weights, config, 0.25, labelled))


def test_instances_without_a_label_learn_from_the_teachers_alone():
    generator = torch.Generator().manual_seed(1)
    logits, teachers = torch.randn(4, 3, generator=generator), torch.randn(4, 2, 3, generator=generator)
    weights = normalise_weights(np.array([[1, 1], [1, 0], [0, 0], [0, 1]]))
    labelled = torch.tensor([True, False, False, True])
    config = KDConfig(alpha=0.3)
    parts = kd_loss(logits, torch.tensor([0, 1, 2, 0]), teachers, weights, config, labelled)
    planted = kd_loss(logits, torch.tensor([0, 2, 0, 0]), teachers, weights, config, labelled)
    torch.testing.assert_close(parts.total, planted.total)  # a wrong label on unlabelled rows changes nothing
    torch.testing.assert_close(parts.total[1], parts.kd[1])  # the KD term at full weight
    assert parts.total[2].item() == 0.0  # no label, no teacher: nothing to learn from


def test_aggregation_without_written_out_gradient_falls_back_to_autograd(monkeypatch):
    monkeypatch.setattr(distill, "_AGGREGATIONS", dict(distill._AGGREGATIONS))

    @distill.register_aggregation("max_teacher_ce")
    def max_teacher_ce(student_log_probs, teacher_probs, weights):
        per_teacher = -(teacher_probs * student_log_probs.unsqueeze(1)).sum(dim=-1)
        return (weights * per_teacher).max(dim=1).values

    generator = torch.Generator().manual_seed(1)
    logits, teachers = torch.randn(5, 3, generator=generator), torch.randn(5, 2, 3, generator=generator)
    labels, weights = torch.tensor([0, 1, 2, 1, 0]), torch.full((5, 2), 0.5)
    config = KDConfig(aggregation="max_teacher_ce")
    parts, gradient = kd_loss_and_logit_gradient(logits, labels, soft_targets(teachers, config), weights, config, 1.0)
    assert not parts.total.requires_grad and not logits.requires_grad
    torch.testing.assert_close(gradient, _autograd_logit_gradient(logits, labels, teachers, weights, config, 1.0))
