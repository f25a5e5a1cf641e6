"""Teacher pools (slices, biased and noisy teachers) and the ``bow`` student, on tiny made-up data."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import kd_env  # noqa: F401 - registers the env ids
from kd_env.teachers.pools import TEACHER_POOLS, ZOO_DOMAINS, pool_teachers
from kd_env.teachers.slices import SliceSpec, cluster_assignments, slice_masks, teacher_training_labels
from kd_env.students import BagStudent
from kd_env.tasks import load_task
from kd_env.teachers import PreparationConfig, TeacherSpec, prepare_teachers, resolve_teacher_specs


def tiny_spec(encoder, **fields):
    return {"name": "tiny", "encoder": encoder, "epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "max_length": 16, **fields}


# ------------------------------------------------------------------------------------------ slices
def test_slice_strings_parse_or_fail_clearly():
    assert SliceSpec.parse("cluster:3:2") == SliceSpec("cluster", num_clusters=3, cluster=2)
    assert SliceSpec.parse("classes:2,0").classes == (0, 2)
    for bad in ("cluster:3:3", "cluster:1:0", "cluster:3", "classes:", "classes:-1", "topic:1", "classes:a"):
        with pytest.raises(ValueError, match="bad slice"):
            SliceSpec.parse(bad)


def test_cluster_slices_partition_every_split_and_follow_training_centres():
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    vectors = {s: centres[rng.integers(0, 3, n)] + rng.normal(0, 0.3, (n, 2)) for s, n in (("train", 90), ("dev", 30), ("test", 30))}
    labels = {s: np.zeros(len(v), dtype=int) for s, v in vectors.items()}
    clusters = cluster_assignments(vectors, 3)
    masks = [slice_masks(SliceSpec.parse(f"cluster:3:{i}"), labels, clusters) for i in range(3)]
    for split in vectors:
        stacked = np.stack([m[split] for m in masks])
        np.testing.assert_array_equal(stacked.sum(axis=0), 1)  # every instance in exactly one slice
    # Nearby points share a slice: each slice is one of the three blobs.
    for m in masks:
        assert len({int(np.argmin(((centres - v) ** 2).sum(1))) for v in vectors["test"][m["test"]]}) == 1


def test_teacher_labels_drop_shift_random_and_noise():
    labels = np.array([0, 1, 2, 0, 1, 2])
    in_slice = np.array([True, True, False, False, True, False])
    ids, taught = teacher_training_labels(labels, in_slice, "drop", 0.0, 3, seed=0)
    np.testing.assert_array_equal(ids, [0, 1, 4])
    np.testing.assert_array_equal(taught, [0, 1, 1])
    ids, taught = teacher_training_labels(labels, in_slice, "shift", 0.0, 3, seed=0)
    np.testing.assert_array_equal(taught, [0, 1, 0, 1, 1, 0])
    big = np.repeat([0, 1, 2], 2000)
    _, noisy = teacher_training_labels(big, None, "drop", 0.3, 3, seed=1)
    flipped = noisy != big
    assert 0.27 < flipped.mean() < 0.33  # a flip always lands on a different class
    with pytest.raises(ValueError, match="outside_slice"):
        teacher_training_labels(labels, in_slice, "sideways", 0.0, 3, seed=0)


@pytest.mark.parametrize("fields, message", [
    ({"label_noise": 1.0}, "label_noise"),
    ({"label_noise": -0.1}, "label_noise"),
    ({"outside_slice": "flip"}, "outside_slice"),
    ({"slice": "cluster:0:0"}, "bad slice"),
])
def test_bad_teacher_options_fail_at_spec_time(fields, message):
    with pytest.raises(ValueError, match=message):
        TeacherSpec(name="t", encoder="minilm-l6", **fields)


# ------------------------------------------------------------------------------------------- pools
def test_named_pools_resolve_to_specs_and_unknown_names_fail():
    for name in TEACHER_POOLS:
        specs = resolve_teacher_specs(name)
        assert len(specs) >= 3 and len({s.name for s in specs}) == len(specs)
    biased = resolve_teacher_specs("biased-specialists")
    assert [s.slice for s in biased] == ["cluster:3:0", "cluster:3:1", "cluster:3:2"]
    assert {s.outside_slice for s in biased} == {"shift"}
    assert {s.tuning for s in resolve_teacher_specs(None)} == {"head"}  # the cheap default (docs/benchmarks.md)
    assert resolve_teacher_specs(None) == resolve_teacher_specs("default")
    assert {s.tuning for s in resolve_teacher_specs("fine-tuned")} == {"full"}
    assert pool_teachers("fine-tuned") == ["minilm-l6", "minilm-l3", "mpnet-l3"]
    diverse = resolve_teacher_specs("diverse-encoders")  # generalists, one per encoder; the MiniLM ones are the named heads
    assert [s.encoder for s in diverse] == ["minilm-l6", "minilm-l3", "mpnet-base"]
    assert {(s.tuning, s.slice, s.train_fraction) for s in diverse} == {("head", None, 1.0)}
    assert diverse[:2] == resolve_teacher_specs(["minilm-l6-head", "minilm-l3-head"])
    mixed = resolve_teacher_specs(["minilm-l6", "biased-specialists"])  # a pool name inside a list
    assert [s.name for s in mixed] == ["minilm-l6", *(s.name for s in biased)]
    with pytest.raises(ValueError, match="unknown teacher pool 'experts'"):
        resolve_teacher_specs("experts")


@pytest.mark.parametrize("pool", ["zoo", "zoo-mixed"])
def test_zoos_cover_each_domain_with_one_or_two_teachers_that_know_nothing_outside(pool):
    specs = resolve_teacher_specs(pool)
    assert len(specs) >= 6 and {s.tuning for s in specs} == {"head"} and {s.outside_slice for s in specs} == {"drop"}
    domains = [SliceSpec.parse(s.slice) for s in specs]
    assert {d.num_clusters for d in domains} == {ZOO_DOMAINS}
    per_domain = np.bincount([d.cluster for d in domains], minlength=ZOO_DOMAINS)
    assert set(per_domain.tolist()) == {1, 2}
    assert len({s.encoder for s in specs}) >= 2


def test_biased_class_specialist_is_taught_its_bias(tmp_path, tiny_bert, reviews_csv):
    """A teacher honest on class 0 and taught gold + 1 elsewhere: right in its slice, wrong outside."""
    task = load_task(f"csv:{reviews_csv}")
    config = PreparationConfig(cache_dir=str(tmp_path), semantic_encoder=tiny_bert, device="cpu")
    spec = resolve_teacher_specs([tiny_spec(tiny_bert, slice="classes:0", outside_slice="shift", epochs=8)])
    cache = prepare_teachers(task, spec, config)
    slice_accuracy = cache.entry("tiny").meta["slice_accuracy"]
    assert slice_accuracy["train"]["in_slice"] > 0.8
    assert slice_accuracy["train"]["outside_slice"] < 0.2


def test_head_teacher_trains_on_cached_vectors_and_is_cached(tmp_path, tiny_bert, reviews_csv, monkeypatch):
    from kd_env.teachers import preparation as teachers_module

    task = load_task(f"csv:{reviews_csv}")
    config = PreparationConfig(cache_dir=str(tmp_path), semantic_encoder=tiny_bert, device="cpu")
    spec = resolve_teacher_specs([tiny_spec(tiny_bert, tuning="head", epochs=20, learning_rate=1e-2)])
    first = prepare_teachers(task, spec, config)
    logits = np.asarray(first.outputs("test").logits)[:, 0]
    # The cached outputs are the saved head applied to the frozen encoder's cached vectors.
    from safetensors.torch import load_file

    from kd_env.teachers.heads import HeadClassifier
    from kd_env.teachers import sentence_embeddings

    vectors = torch.from_numpy(np.asarray(sentence_embeddings(task, config).array("test.vectors")))
    head = HeadClassifier(vectors.shape[1], 3)
    head.load_state_dict(load_file(first.entry("tiny").file("model.safetensors")))
    with torch.no_grad():
        expected = head.eval()({"vectors": vectors})[0].numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert not np.allclose(logits, logits[:1])  # it depends on the instance
    monkeypatch.setattr(teachers_module, "fine_tune", lambda *a, **k: pytest.fail("rebuilt a cached teacher"))
    again = prepare_teachers(task, spec, config)
    np.testing.assert_array_equal(np.asarray(again.outputs("test").logits)[:, 0], logits)
    with pytest.raises(ValueError, match="num_layers must be None"):
        TeacherSpec(name="t", encoder=tiny_bert, tuning="head", num_layers=1)


def test_slice_smaller_than_a_batch_fails_before_fine_tuning(tmp_path, tiny_bert, reviews_csv, monkeypatch):
    from kd_env.teachers import preparation as teachers_module

    monkeypatch.setattr(teachers_module, "fine_tune", lambda *a, **k: pytest.fail("fine-tuned a teacher"))
    task = load_task(f"csv:{reviews_csv}")
    config = PreparationConfig(cache_dir=str(tmp_path), semantic_encoder=tiny_bert, device="cpu")
    with pytest.raises(ValueError, match="fewer than one batch"):
        prepare_teachers(task, resolve_teacher_specs([tiny_spec(tiny_bert, slice="cluster:3:0", batch_size=1000)]), config)
    with pytest.raises(ValueError, match="cover every class"):
        prepare_teachers(task, resolve_teacher_specs([tiny_spec(tiny_bert, slice="classes:0,1,2")]), config)


# -------------------------------------------------------------------------------------- bow student
def bow_env(tmp_path, tiny_bert, reviews_csv, **student_options):
    return gym.make(
        "kd_env/TeacherSelection-v1", task=f"csv:{reviews_csv}", teachers=[tiny_spec(tiny_bert)],
        task_options={"cache_dir": str(tmp_path), "semantic_encoder": tiny_bert, "device": "cpu"},
        student="bow", student_options={"tokenizer": tiny_bert, "max_length": 16, **student_options}, batch_size=8,
    )


def test_bow_student_trains_in_the_env(tmp_path, tiny_bert, reviews_csv):
    env = bow_env(tmp_path, tiny_bert, reviews_csv, embedding_dim=8, hidden=8)
    env.reset(seed=0)
    student = env.unwrapped.student
    assert isinstance(student, BagStudent) and student.embedding.embedding_dim == 8
    before = student.embedding.weight.detach().clone()
    _, reward, *_ = env.step(env.action_space.sample())
    assert np.isfinite(reward)
    assert not np.allclose(before, env.unwrapped.student.embedding.weight.detach())  # a copy of the trained student


def test_bow_student_starts_from_an_encoders_input_embeddings(tmp_path, tiny_bert, reviews_csv):
    from kd_env.text_models import load_encoder

    env = bow_env(tmp_path, tiny_bert, reviews_csv, pretrained_embeddings=tiny_bert)
    env.reset(seed=0)
    expected = load_encoder(tiny_bert).get_input_embeddings().weight
    np.testing.assert_allclose(env.unwrapped.student.embedding.weight.detach().numpy(), expected.detach().numpy())


def test_bow_student_refuses_unknown_and_bad_options(tmp_path, tiny_bert, reviews_csv):
    with pytest.raises(ValueError, match="bow student"):
        bow_env(tmp_path, tiny_bert, reviews_csv, width=3)
    with pytest.raises(ValueError, match="hidden must be >= 1"):
        bow_env(tmp_path, tiny_bert, reviews_csv, hidden=0)


def test_teacher_preparation_says_how_long_it_will_take():
    from kd_env.teachers.preparation import expected_time
    from kd_env.teachers.specs import NAMED_TEACHERS

    assert expected_time(NAMED_TEACHERS["minilm-l6"], 2000) == "a full fine-tune for 1 epoch(s) on 2000 texts, about 1 min on a 2-core CPU"
    assert "about 2 min" in expected_time(NAMED_TEACHERS["mpnet-l3"], 2000)
    assert "seconds" in expected_time(NAMED_TEACHERS["minilm-l6-head"], 2000)
