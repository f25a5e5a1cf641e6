"""Cache integrity end to end: everything served is checksummed or content-keyed, anything damaged is
rebuilt with a warning, and one process builds a missing entry while the others wait."""

import json
import threading
import time

import numpy as np
import pytest

from kd_env import assets
from kd_env.cache import MANIFEST, ArrayStore, content_key
from kd_env.tasks import TextSplit, TextTask
from kd_env.teachers import DiskTeacherCache, PreparationConfig, TeacherSpec, teacher_description

SPLIT_NAMES = ("train", "dev", "test")


def teacher_arrays(value):
    return {f"{split}.{name}": np.full((4, 3) if name != "ce" else (4,), value, dtype=np.float32)
            for split in SPLIT_NAMES for name in ("logits", "ce", "pooled")}


def test_rebuilt_teacher_is_not_served_from_a_stale_stacked_entry(tmp_path):
    store = ArrayStore(tmp_path)
    entry = store.get_or_build("teachers", {"t": 1}, lambda folder: (teacher_arrays(1.0), {}))
    assert DiskTeacherCache({"t": entry}, store).outputs("train").logits.max() == 1.0
    # The same key rebuilt with other outputs (e.g. after damage, on another machine).
    (entry.path / MANIFEST).unlink()
    entry = store.get_or_build("teachers", {"t": 1}, lambda folder: (teacher_arrays(2.0), {}))
    assert DiskTeacherCache({"t": entry}, store).outputs("train").logits.max() == 2.0


def test_device_and_precision_are_in_the_teacher_key():
    split = TextSplit(("a b", "c d"), np.array([0, 1]))
    task = TextTask("t", ("x", "y"), {name: split for name in SPLIT_NAMES})
    spec = TeacherSpec(name="t", encoder="e")
    keys = {content_key(teacher_description(task, spec, PreparationConfig(device=device, mixed_precision=mixed)))
            for device in ("cpu", "cuda") for mixed in (False, True)}
    assert len(keys) == 4
    # The CPU in float32 keeps the key it had before the runtime was recorded.
    assert "runtime" not in teacher_description(task, spec, PreparationConfig(device="cpu"))


def test_edited_metadata_is_rebuilt(tmp_path, caplog):
    store, calls = ArrayStore(tmp_path), []

    def build(folder):
        calls.append(1)
        return {"x": np.zeros(2)}, {"accuracy": 0.5}

    entry = store.get_or_build("kind", {"a": 1}, build)
    manifest = json.loads((entry.path / MANIFEST).read_text())
    manifest["meta"]["accuracy"] = 0.9
    (entry.path / MANIFEST).write_text(json.dumps(manifest))
    assert store.get_or_build("kind", {"a": 1}, build).meta == {"accuracy": 0.5}
    assert len(calls) == 2 and "metadata does not match its checksum" in caplog.text


@pytest.mark.parametrize("damage", ["sha256_key", "no_meta", "not_json"])
def test_unreadable_manifest_is_rebuilt(tmp_path, caplog, damage):
    store, calls = ArrayStore(tmp_path), []

    def build(folder):
        calls.append(1)
        (folder / "weights.bin").write_bytes(b"w")  # an extra file: checksummed only when read
        return {"x": np.arange(3)}, {}

    manifest_file = store.get_or_build("kind", {"a": 1}, build).path / MANIFEST
    text = manifest_file.read_text()
    damaged = {"sha256_key": text.replace('"sha256"', '"sha257"'), "no_meta": text.replace('"meta":', '"meat":'),
               "not_json": text[:10]}[damage]
    manifest_file.write_text(damaged)
    entry = store.get_or_build("kind", {"a": 1}, build)
    assert entry.array("x").tolist() == [0, 1, 2] and entry.file("weights.bin").read_bytes() == b"w"
    assert len(calls) == 2 and "unreadable manifest" in caplog.text


def test_entry_missing_a_required_array_is_rebuilt(tmp_path, caplog):
    store, calls = ArrayStore(tmp_path), []

    def build(folder):
        calls.append(1)
        arrays = {"a": np.zeros(2), "b": np.ones(2)}
        return (arrays if len(calls) > 1 else {"a": arrays["a"]}), {}

    store.get_or_build("kind", {"a": 1}, build)  # an entry from older code, without "b"
    entry = store.get_or_build("kind", {"a": 1}, build, required=("a", "b"))
    assert entry.array("b").tolist() == [1.0, 1.0] and len(calls) == 2
    assert "arrays ['b'] are missing" in caplog.text


def test_one_builder_while_the_others_wait(tmp_path):
    store, calls, entries = ArrayStore(tmp_path), [], []

    def build(folder):
        calls.append(1)
        time.sleep(0.3)
        return {"x": np.arange(3)}, {}

    threads = [threading.Thread(target=lambda: entries.append(store.get_or_build("kind", {"a": 1}, build))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(entries) == 3


def test_stale_staging_folders_are_removed(tmp_path):
    store = ArrayStore(tmp_path)
    stale = tmp_path / "kind" / f".{content_key({'a': 1})}-killed"
    stale.mkdir(parents=True)
    (stale / "x.npy").write_bytes(b"half")
    store.get_or_build("kind", {"a": 1}, lambda folder: ({"x": np.zeros(2)}, {}))
    assert not stale.exists()


def fake_encoder(calls):
    def build(folder):
        calls.append(1)
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"w" * 1000)

    return build


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "no_manifest", "manifest_key"])
def test_damaged_encoder_build_is_rebuilt(tmp_path, caplog, damage):
    calls, target = [], tmp_path / "encoders" / "enc"
    assets._materialise(target, fake_encoder(calls))
    weights = target / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(b"w" * 10)
    elif damage == "flip":
        weights.write_bytes(b"x" + b"w" * 999)
    elif damage == "delete":
        weights.unlink()
    elif damage == "manifest_key":
        (target / MANIFEST).write_text((target / MANIFEST).read_text().replace('"sha256"', '"sha257"'))
    else:
        (target / MANIFEST).unlink()
    assets._materialise(target, fake_encoder(calls))
    assert len(calls) == 2 and weights.read_bytes() == b"w" * 1000
    assert "is damaged" in caplog.text and "rebuilding it" in caplog.text
    assets._materialise(target, fake_encoder(calls))
    assert len(calls) == 2
