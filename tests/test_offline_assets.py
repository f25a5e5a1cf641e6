"""The real offline encoders and the default env (slow: minutes on first use, which fills the cache)."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import kd_env  # noqa: F401 - registers the env ids
from kd_env.assets import _MINILM_L3_ONNX, package_file
from kd_env.text_models import load_encoder, load_tokenizer

# Integration too, so that `-m "not integration"` (which replaces the default `-m "not slow"`) leaves them out.
pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_minilm_l3_rebuilt_from_onnx_matches_the_onnx_graph():
    import onnx
    from onnx.reference import ReferenceEvaluator

    tokenizer = load_tokenizer("minilm-l3")
    batch = tokenizer(["self-driving cars are the future", "no"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = load_encoder("minilm-l3").eval()(**batch).last_hidden_state.numpy()
    graph = onnx.load(str(package_file(*_MINILM_L3_ONNX)))
    feeds = {i.name: batch[i.name].numpy() for i in graph.graph.input}
    reference = ReferenceEvaluator(graph).run(None, feeds)
    matching = [out for out in reference if out.shape == hidden.shape]
    assert matching, f"no ONNX output has the hidden-state shape {hidden.shape}"
    np.testing.assert_allclose(matching[0], hidden, atol=1e-3)


@pytest.mark.parametrize("name, layers, hidden", [("minilm-l6", 6, 384), ("minilm-l3", 3, 384), ("mpnet-base", 12, 768)])
def test_offline_encoders_load(name, layers, hidden):
    model = load_encoder(name)
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (layers, hidden)
    assert load_tokenizer(name)("hello world")["input_ids"][0] == load_tokenizer(name).cls_token_id


def test_default_env_runs_offline_on_twitter_sentiment():
    env = gym.make("kd_env/TeacherSelection-v1")
    assert env.unwrapped.task == "twitter-sentiment"
    assert env.unwrapped.teacher_names == ("minilm-l6-head", "minilm-l3-head", "minilm-l6-head-10pct")  # the cheap default pool
    env.reset(seed=0)
    terminated = False
    while not terminated:
        _, _, terminated, _, info = env.step(np.ones(env.action_space.shape, dtype=np.int8))
    assert 0.4 < info["dev_accuracy"] <= 1.0


def test_biased_specialists_are_right_in_their_cluster_and_confidently_wrong_outside():
    """The headroom regime on real tweets: each specialist learned its own cluster and the shifted
    rule elsewhere, so per-instance selection has a known answer."""
    from kd_env.tasks.text_data import prepare_text_task

    _, cache, _, _ = prepare_text_task("twitter-sentiment", "biased-specialists", {})
    for name in cache.teacher_names:
        slices = cache.entry(name).meta["slice_accuracy"]["test"]
        assert slices["in_slice"] > 0.55 and slices["outside_slice"] < 0.3, (name, slices)
    probs = torch.softmax(torch.as_tensor(np.asarray(cache.outputs("test").logits)), dim=-1)
    assert probs.max(dim=-1).values.mean() > 0.6  # confident, not near-uniform
