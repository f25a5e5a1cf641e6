import gymnasium as gym
import numpy as np
import pytest
import torch

import kd_env  # noqa: F401 - registers the env ids
from kd_env.teachers import preparation as teachers_module
from kd_env.assets import resolve_encoder
from kd_env.cache import ArrayStore, cache_root, content_key
from kd_env.tasks.dispatch import build_distillation_data
from kd_env.tasks import load_task
from kd_env.teachers import PreparationConfig, prepare_teachers, resolve_teacher_specs
from kd_env.text_models import load_encoder


def tiny_teachers(encoder):
    common = {"encoder": encoder, "epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "max_length": 16}
    return [{"name": "tiny-2", **common}, {"name": "tiny-1", "num_layers": 1, "train_fraction": 0.5, **common}]


def text_options(cache_dir, encoder):
    return {"cache_dir": str(cache_dir), "semantic_encoder": encoder, "device": "cpu"}


# ------------------------------------------------------------------------------------- array store
def test_store_hit_never_rebuilds_and_arrays_map_read_only(tmp_path):
    store, calls = ArrayStore(tmp_path), []

    def build(folder):
        calls.append(folder)
        return {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}, {"note": "first"}

    entry = store.get_or_build("kind", {"a": 1}, build)
    again = store.get_or_build("kind", {"a": 1}, build)
    assert len(calls) == 1 and again.meta == {"note": "first"}
    mapped = again.array("x")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, entry.array("x", mmap=False))
    store.get_or_build("kind", {"a": 2}, build)
    assert len(calls) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_manifest"])
def test_damaged_entry_is_rebuilt_not_used(tmp_path, damage):
    store = ArrayStore(tmp_path)
    value = {"x": np.ones((100, 4), dtype=np.float32)}
    entry = store.get_or_build("kind", {"a": 1}, lambda folder: (value, {}))
    target = entry.path / "x.npy"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:200])
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))
    else:
        (entry.path / "manifest.json").unlink()
    rebuilt = []
    entry = store.get_or_build("kind", {"a": 1}, lambda folder: (rebuilt.append(1) or value, {}))
    assert rebuilt == [1]
    np.testing.assert_array_equal(entry.array("x"), value["x"])


def test_failed_build_leaves_nothing_behind(tmp_path):
    store = ArrayStore(tmp_path)

    def build(folder):
        np.save(folder / "partial.npy", np.zeros(3))
        raise RuntimeError("out of memory halfway")

    with pytest.raises(RuntimeError, match="halfway"):
        store.get_or_build("kind", {"a": 1}, build)
    assert [p.name for p in (tmp_path / "kind").iterdir()] == [f".{content_key({'a': 1})}.lock"]  # the lock stays, reusable


def test_unwritable_cache_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="not writable.*KD_ENV_CACHE"):
        cache_root(blocker / "cache")


# ------------------------------------------------------------------------- encoders and teachers
def test_unknown_encoder_and_teacher_names_list_what_exists(tmp_path):
    assert resolve_encoder("some/hub-id") == "some/hub-id"
    with pytest.raises(ValueError, match=r"minilm-l6.*minilm-l3.*mpnet-base"):
        load_encoder(str(tmp_path / "no-such-model"))
    with pytest.raises(ValueError, match=r"unknown teacher 'bert-large'.*minilm-l3"):
        resolve_teacher_specs(["bert-large"])
    with pytest.raises(ValueError, match="unknown teacher spec options"):
        resolve_teacher_specs([{"encoder": "minilm-l6", "layers": 2}])


def test_truncated_encoder_keeps_the_first_layers(tiny_bert):
    full, first = load_encoder(tiny_bert), load_encoder(tiny_bert, num_layers=1)
    assert len(first.encoder.layer) == 1 and first.config.num_hidden_layers == 1
    for name, tensor in first.encoder.layer[0].state_dict().items():
        torch.testing.assert_close(tensor, full.encoder.layer[0].state_dict()[name])
    with pytest.raises(ValueError, match="has 2 layers; cannot keep 5"):
        load_encoder(tiny_bert, num_layers=5)


def test_teachers_fine_tune_fill_the_cache_and_are_then_read(tmp_path, tiny_bert, reviews_csv, monkeypatch):
    task = load_task(f"csv:{reviews_csv}")
    specs = resolve_teacher_specs(tiny_teachers(tiny_bert))
    config = PreparationConfig(cache_dir=str(tmp_path), device="cpu")
    cache = prepare_teachers(task, specs, config)
    assert cache.teacher_names == ["tiny-2", "tiny-1"]
    outputs = cache.outputs("dev")
    n = len(task.splits["dev"])
    assert outputs.logits.shape == (n, 2, 3) and outputs.ce.shape == (n, 2)
    assert [p.shape for p in outputs.pooled] == [(n, 32), (n, 32)]
    expected_ce = torch.nn.functional.cross_entropy(outputs.logits[:, 0], torch.from_numpy(task.splits["dev"].labels), reduction="none")
    torch.testing.assert_close(outputs.ce[:, 0], expected_ce)
    meta = cache.entry("tiny-2").meta
    assert set(meta["accuracy"]) == {"train", "dev", "test"} and meta["best_dev_accuracy"] == pytest.approx(meta["accuracy"]["dev"])

    def no_fine_tuning(*args, **kwargs):
        raise AssertionError("a valid cache entry was recomputed")

    monkeypatch.setattr(teachers_module, "fine_tune", no_fine_tuning)
    again = prepare_teachers(task, specs, config)
    torch.testing.assert_close(again.outputs("dev").logits, outputs.logits)
    # Outputs are tensors over the memory-mapped cache files (shared between env processes), not copies.
    mapped = [line.split()[0].split("-") for line in open("/proc/self/maps") if str(tmp_path) in line]
    for tensor in (outputs.logits, outputs.ce, *outputs.pooled):
        assert any(int(start, 16) <= tensor.data_ptr() < int(end, 16) for start, end in mapped)
    online = teachers_module.load_teacher_model(cache.entry("tiny-2"))
    assert online.head.out_features == 3


def test_failed_teacher_preparation_leaves_no_entry(tmp_path, tiny_bert, reviews_csv, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(teachers_module, "fine_tune", crash)
    task = load_task(f"csv:{reviews_csv}")
    with pytest.raises(KeyboardInterrupt):
        prepare_teachers(task, resolve_teacher_specs(tiny_teachers(tiny_bert)), PreparationConfig(cache_dir=str(tmp_path), device="cpu"))
    assert [p for p in (tmp_path / "teachers").iterdir() if p.suffix != ".lock"] == []


# ------------------------------------------------------------------------------- the text problem
def test_text_task_builds_distillation_data_for_the_head_student(tmp_path, tiny_bert, reviews_csv):
    data = build_distillation_data(f"csv:{reviews_csv}", tiny_teachers(tiny_bert), text_options(tmp_path, tiny_bert))
    train = data.splits["train"]
    assert data.teacher_names == ("tiny-2", "tiny-1") and data.class_names == ("neg", "neu", "pos")
    assert train.student_inputs["features"].shape == (len(train), 32)
    torch.testing.assert_close(train.semantic.norm(dim=1), torch.ones(len(train)))
    with pytest.raises(ValueError, match="unknown text task options"):
        build_distillation_data(f"csv:{reviews_csv}", tiny_teachers(tiny_bert), {"cache": "x"})


def transformer_env_kwargs(cache_dir, encoder, reviews_csv):
    return {
        "task": f"csv:{reviews_csv}",
        "teachers": tiny_teachers(encoder),
        "task_options": text_options(cache_dir, encoder),
        "student": "transformer",
        "student_options": {"encoder": encoder, "num_layers": 1},
        "batch_size": 8,
        "episode_steps": 4,
    }


def test_transformer_student_env_is_deterministic_per_seed(tmp_path, tiny_bert, reviews_csv):
    kwargs = transformer_env_kwargs(tmp_path, tiny_bert, reviews_csv)
    traces = []
    for _ in range(2):
        env = gym.make("kd_env/TeacherSelection-v1", **kwargs)
        obs, _ = env.reset(seed=3)
        env.action_space.seed(3)
        trace = [obs]
        for _ in range(4):
            obs, reward, terminated, _, info = env.step(env.action_space.sample())
            trace += [obs, np.array([reward])]
        assert terminated and "dev_accuracy" in info
        traces.append(trace)
    for a, b in zip(*traces):
        np.testing.assert_array_equal(a, b)
    student = env.unwrapped.student
    assert len(student.classifier.encoder.encoder.layer) == 1
    assert env.unwrapped.learning_rate == 5e-5


def test_transformer_student_from_a_config(tmp_path, tiny_bert, reviews_csv):
    kwargs = transformer_env_kwargs(tmp_path, tiny_bert, reviews_csv)
    config = {"model_type": "bert", "vocab_size": 21, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    kwargs["student_options"] = {"config": config, "tokenizer": tiny_bert}
    env = gym.make("kd_env/TeacherSelection-v1", **kwargs)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.unwrapped.student.classifier.encoder.config.hidden_size == 16
    kwargs["student_options"] = {"config": config}
    with pytest.raises(ValueError, match="needs a 'tokenizer'"):
        gym.make("kd_env/TeacherSelection-v1", **kwargs)


def test_extra_files_are_size_checked_on_load_and_checksummed_on_use(tmp_path):
    store = ArrayStore(tmp_path)

    def build(folder):
        (folder / "weights.bin").write_bytes(b"0123456789")
        return {"x": np.zeros(2)}, {}

    entry = store.get_or_build("kind", {"a": 1}, build)
    assert entry.file("weights.bin").read_bytes() == b"0123456789"
    (entry.path / "weights.bin").write_bytes(b"0123456780")
    with pytest.raises(ValueError, match="does not match its checksum"):
        store.load("kind", entry.path.name).file("weights.bin")
    (entry.path / "weights.bin").write_bytes(b"01234")
    assert store.load("kind", entry.path.name) is None


def test_mixed_precision_preparation_runs_on_cpu(tmp_path, tiny_bert, reviews_csv):
    task = load_task(f"csv:{reviews_csv}")
    specs = resolve_teacher_specs(tiny_teachers(tiny_bert)[:1])
    cache = prepare_teachers(task, specs, PreparationConfig(cache_dir=str(tmp_path), device="cpu", mixed_precision=True))
    logits = cache.outputs("test").logits
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
