"""The distillation core: N envs of one core step as N cores of one env do, for every student kind
(stacked ``head`` and ``bow``, the per-student loop for ``transformer``); the memory bound on N."""

import dataclasses

import numpy as np
import pytest
import torch

from kd_env import core as core_module
from kd_env.config import EnvConfig
from kd_env.core import DistillationCore
from kd_env.student_stacks import BagStack, HeadStack, LoopStack

NUM_ENVS, STEPS = 3, 7
TINY_TRANSFORMER = {"config": {"model_type": "bert", "vocab_size": 21, "hidden_size": 16, "num_hidden_layers": 1,
                               "num_attention_heads": 2, "intermediate_size": 32}}


def rollout(core, actions):
    """Observations, rewards, info and test metrics of a few steps across episode ends, as numpy arrays."""
    rngs = [np.random.default_rng(7 + i) for i in range(core.num_envs)]
    trace = [core.reset(rngs)[0]]
    for t, action in enumerate(actions):
        obs, rewards, terminated, info = core.step(action)
        trace += [obs, rewards, *info.values()]
        if terminated:
            trace.append(core.reset(rngs, keep_student=t % 2 == 0)[0])
    trace += list(core.evaluate("test").values())
    return [value.cpu().numpy() for value in trace]


def single_rollouts(config, actions):
    traces = []
    for i in range(NUM_ENVS):
        single = DistillationCore(config, num_envs=1)
        rng = [np.random.default_rng(7 + i)]
        trace = [single.reset(rng)[0]]
        for t, action in enumerate(actions):
            obs, rewards, terminated, info = single.step(action[i : i + 1])
            trace += [obs, rewards, *info.values()]
            if terminated:
                trace.append(single.reset(rng, keep_student=t % 2 == 0)[0])
        trace += list(single.evaluate("test").values())
        traces.append([value.cpu().numpy() for value in trace])
    return traces


def assert_population_matches_singles(config, stack_type):
    core = DistillationCore(config, num_envs=NUM_ENVS)
    generator = np.random.default_rng(0)
    size = core.batch_size * core.num_teachers
    actions = [generator.integers(0, 2, size=(NUM_ENVS, size)).astype(np.int8) for _ in range(STEPS)]
    together = rollout(core, actions)
    assert isinstance(core.students, stack_type)
    for i, alone in enumerate(single_rollouts(config, actions)):
        for j, (expected, got) in enumerate(zip(alone, together)):
            np.testing.assert_allclose(got[i], expected[0], rtol=1e-4, atol=1e-5, err_msg=f"env {i}, value {j}")


@pytest.mark.parametrize("reward, aggregation", [("student_ce", "weighted_ce"), ("ce_gain", "kl_to_average"), ("dev_gain", "weighted_ce"),
                                                ("probe_alignment", "kl_to_average")])
def test_head_population_matches_single_cores(reward, aggregation, small_env_kwargs):
    config = EnvConfig.from_kwargs({**small_env_kwargs, "episode_steps": 3, "reward": reward, "terminal_bonus": 0.5,
                                    "aggregation": aggregation, "tau_squared": aggregation == "kl_to_average"})
    assert_population_matches_singles(config, HeadStack)


@pytest.mark.parametrize("reward, weight_decay", [("student_loss", 0.0), ("ce_gain", 0.01), ("probe_alignment", 0.0)])
def test_bow_population_matches_single_cores(reward, weight_decay, text_env_kwargs):
    config = EnvConfig.from_kwargs({**text_env_kwargs, "student": "bow", "episode_steps": 3, "reward": reward,
                                    "weight_decay": weight_decay})
    assert_population_matches_singles(config, BagStack)


def test_transformer_population_matches_single_cores(text_env_kwargs):
    options = {**TINY_TRANSFORMER, "tokenizer": text_env_kwargs["student_options"]["tokenizer"]}
    config = EnvConfig.from_kwargs({**text_env_kwargs, "student": "transformer", "student_options": options, "episode_steps": 3})
    assert_population_matches_singles(config, LoopStack)


def test_bow_stack_trains_only_the_rows_the_training_split_uses(text_env_kwargs):
    """Rows of word pieces absent from the training split keep their initial values (as AdamW leaves
    them without weight decay), and the student built from the stack has them all."""
    core = DistillationCore(EnvConfig.from_kwargs({**text_env_kwargs, "student": "bow", "episode_steps": 3}), num_envs=2)
    core.reset([np.random.default_rng(0), np.random.default_rng(1)])
    initial = core.student(1).embedding.weight.detach().clone()
    size = core.batch_size * core.num_teachers
    for _ in range(3):
        core.step(np.ones((2, size), dtype=np.int8))
    trained = core.student(1).embedding.weight.detach()
    rows = core.students.trained_rows
    unused = torch.ones(len(initial), dtype=torch.bool)
    unused[rows] = False
    assert 0 < len(rows) < len(initial)
    assert torch.equal(trained[unused], initial[unused]) and not torch.equal(trained[rows], initial[rows])


def test_info_level_basic_keeps_what_agents_read(small_env_kwargs):
    core = DistillationCore(EnvConfig.from_kwargs({**small_env_kwargs, "episode_steps": 2, "info_level": "basic"}), 2)
    core.reset([np.random.default_rng(0), np.random.default_rng(1)])
    size = core.batch_size * core.num_teachers
    _, _, _, info = core.step(np.ones((2, size), dtype=np.int8))
    assert set(info) == {"instance_rewards", "oracle"}
    _, _, terminated, info = core.step(np.ones((2, size), dtype=np.int8))
    assert terminated and {"dev_accuracy", "dev_macro_f1", "dev_ce"} <= set(info)


def test_too_many_envs_for_the_memory_are_refused_before_allocating(small_env_kwargs, monkeypatch):
    monkeypatch.setattr(core_module, "available_memory", lambda: 64 * 2**20)
    with pytest.raises(ValueError, match=r"num_envs=100000 needs about .* GiB .* use at most \d+ envs"):
        DistillationCore(EnvConfig.from_kwargs(small_env_kwargs), num_envs=100_000)


@pytest.mark.parametrize("reward", ["ce_gain", "probe_alignment"])
def test_labels_of_the_transfer_set_are_never_read(reward, monkeypatch):
    """A wrong label planted on every unlabelled training row changes no observation, reward, info
    value or student weight: the loss, the features and the rewards read no label there."""
    from kd_env.tasks.synthetic import build_synthetic_data

    options = {"num_train": 256, "num_dev": 64, "num_test": 128, "labels": 48, "transfer": 160}
    data = build_synthetic_data(options=options)
    train = data.splits["train"]
    unlabelled = ~train.label_mask()
    assert unlabelled.sum() == 160
    planted_labels = torch.where(unlabelled, (train.labels + 1) % data.num_classes, train.labels)
    planted = dataclasses.replace(data, splits={**data.splits, "train": dataclasses.replace(train, labels=planted_labels)})
    traces = []
    for source in (data, planted):
        monkeypatch.setattr(core_module, "build_distillation_data", lambda *args, source=source, **kwargs: source)
        core = DistillationCore(EnvConfig.from_kwargs({"task": "synthetic", "batch_size": 16, "episode_steps": 4,
                                                       "reward": reward, "empty_selection": "hard_label"}), num_envs=2)
        generator = np.random.default_rng(0)
        actions = [generator.integers(0, 2, size=(2, 16 * core.num_teachers)) for _ in range(6)]
        trace = rollout(core, actions)
        trace += [p.detach().numpy() for i in range(2) for p in core.student(i).parameters()]
        traces.append(trace)
    for j, (honest, lied_to) in enumerate(zip(*traces)):
        np.testing.assert_array_equal(honest, lied_to, err_msg=f"value {j}")


def test_probe_alignment_leaves_training_as_it_was_and_rewards_the_experts():
    """The look-ahead puts the students back exactly: the same actions train the same students as under
    another reward. Selecting each instance's experts (which know the clean posterior) scores higher
    than selecting the others, on labelled and unlabelled instances alike."""
    config = {"task": "synthetic", "batch_size": 32, "episode_steps": 6, "task_options": {"labels": 48, "transfer": 400}}
    cores = [DistillationCore(EnvConfig.from_kwargs({**config, "reward": reward}), num_envs=2) for reward in ("ce_gain", "probe_alignment")]
    infos = [core.reset([np.random.default_rng(i) for i in range(2)])[1] for core in cores]
    expert_rewards, other_rewards = [], []
    for _ in range(6):
        oracle = infos[1]["oracle"].numpy()
        actions = np.stack([oracle[0], 1 - oracle[1]])  # env 0 selects the experts, env 1 the others
        infos = [core.step(actions)[3] for core in cores]
        mixed = (oracle.reshape(2, 32, -1).sum(axis=2) % oracle.reshape(2, 32, -1).shape[2]) > 0  # some experts, not all
        rewards = infos[1]["instance_rewards"].numpy()
        expert_rewards += list(rewards[0][mixed[0]])
        other_rewards += list(rewards[1][mixed[1]])
        assert "instance_rewarded" not in infos[1] and "instance_rewarded" in infos[0]
    for i in range(2):
        for a, b in zip(cores[0].student(i).parameters(), cores[1].student(i).parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert np.mean(expert_rewards) > np.mean(other_rewards) + 0.2


def test_a_probe_of_labelled_training_rows_reads_no_dev_label(monkeypatch):
    """``probe_source="labelled"``: wrong dev labels leave every probe_alignment reward as it was; with
    the dev probe they change them."""
    from kd_env.tasks.synthetic import build_synthetic_data

    data = build_synthetic_data(options={"num_train": 256, "num_dev": 64, "num_test": 64, "labels": 48, "transfer": 160})
    dev = data.splits["dev"]
    planted = dataclasses.replace(data, splits={**data.splits, "dev": dataclasses.replace(dev, labels=(dev.labels + 1) % data.num_classes)})

    def rewards(source, probe_source):
        monkeypatch.setattr(core_module, "build_distillation_data", lambda *args, **kwargs: source)
        core = DistillationCore(EnvConfig.from_kwargs({"task": "synthetic", "batch_size": 16, "episode_steps": 4, "reward": "probe_alignment",
                                                       "probe_source": probe_source}), num_envs=2)
        core.reset([np.random.default_rng(i) for i in range(2)])
        generator = np.random.default_rng(0)
        return [core.step(generator.integers(0, 2, size=(2, 16 * core.num_teachers)))[3]["instance_rewards"].numpy() for _ in range(3)]

    np.testing.assert_array_equal(rewards(data, "labelled"), rewards(planted, "labelled"))
    assert not np.allclose(rewards(data, "dev"), rewards(planted, "dev"))
