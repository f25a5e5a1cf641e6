"""A content-addressed, crash-safe store of numpy arrays on disk (teacher outputs, frozen embeddings).

An entry is a folder ``ROOT/KIND/KEY`` where KEY hashes everything the arrays depend on. Each array
is a plain ``.npy`` file, so readers can ``np.load(path, mmap_mode="r")`` it and share pages between
processes. ``manifest.json`` lists every file with its size and SHA-256, and the SHA-256 of the
builder's metadata, and is written last; the entry is built in a staging folder renamed into place,
so a crash leaves no entry, never half of one. An entry whose files or metadata do not match its
manifest (truncated, edited), or that lacks an array its reader requires, is removed and rebuilt with
a warning, never used. A valid entry is never recomputed. Arrays are checksummed on every load; other
files (large model weights) are size-checked on load and checksummed when read through
``CacheEntry.file``. One process builds a missing entry while the others wait on its file lock and
then read it; staging folders left by a killed builder are removed by the next one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """The writable cache directory (created if missing); raises a clear error when it is not writable.

    ``override`` (the task option ``cache_dir``), else ``KD_ENV_CACHE``, else ``$XDG_CACHE_HOME/kd_env``,
    else ``~/.cache/kd_env``. Every store (teacher outputs, embeddings, built encoders) lives under it.
    """
    if override is not None:
        root = Path(override)
    elif os.environ.get("KD_ENV_CACHE"):
        root = Path(os.environ["KD_ENV_CACHE"])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kd_env"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root):
            pass
    except OSError as error:
        raise PermissionError(
            f"the kd_env cache directory {root} is not writable ({error.strerror}); set KD_ENV_CACHE "
            f"(or the task option cache_dir) to a writable directory"
        ) from error
    return root


def json_sha256(value) -> str:
    """The SHA-256 hex digest of a JSON-friendly value, with sorted keys so that key order does not matter.

    The one definition of a content hash: cache keys, manifest checksums and run keys must agree
    with what earlier versions wrote, so every caller hashes the same bytes.
    """
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def content_key(description: dict) -> str:
    """A stable hash of a JSON-friendly description (key order does not matter)."""
    return json_sha256(description)[:32]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def meta_checksum(meta: dict) -> str:
    return json_sha256(meta)


def file_manifest(folder: Path) -> dict[str, dict]:
    """Size and SHA-256 of every file under ``folder``, by path relative to it."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files}


def check_files(folder: Path, files: dict[str, dict], checksummed: Callable[[str], bool]) -> str | None:
    """None if every listed file is present with its size (and checksum, where ``checksummed(name)``);
    else what is wrong, a damaged listing included (a manifest is read from disk like any input)."""
    if not isinstance(files, dict):
        return "unreadable manifest: its file list is not an object"
    for name, expected in files.items():
        if not (isinstance(expected, dict) and isinstance(expected.get("size"), int) and isinstance(expected.get("sha256"), str)):
            return f"unreadable manifest: the size or checksum of {name} is missing"
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != expected["size"]:
            return f"{name} has {file.stat().st_size} bytes, expected {expected['size']}"
        if checksummed(name) and _sha256(file) != expected["sha256"]:
            return f"{name} does not match its checksum"
    return None


@contextmanager
def build_lock(target: Path) -> Iterator[None]:
    """Hold the per-target file lock; inside it, remove staging folders a killed builder left behind.

    Staging folders of ``target`` are named ``.<name>-*``, the lock ``.<name>.lock``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        for stale in target.parent.glob(f".{target.name}-*"):
            logger.info("removing %s, left by an interrupted build", stale)
            shutil.rmtree(stale, ignore_errors=True)
        yield


@dataclass(frozen=True)
class CacheEntry:
    """A valid entry: its folder, its arrays' names and the metadata its builder returned."""

    path: Path
    arrays: tuple[str, ...]
    meta: dict
    checksums: dict[str, str] = field(default_factory=dict, repr=False)
    """SHA-256 of every file of the entry, by name: a digest of its content for entries built from it."""

    def array(self, name: str, mmap: bool = True) -> np.ndarray:
        """An array of the entry; memory-mapped read-only by default."""
        if name not in self.arrays:
            raise KeyError(f"cache entry {self.path} has no array {name!r}; it has {list(self.arrays)}")
        return np.load(self.path / f"{name}.npy", mmap_mode="r" if mmap else None)

    def tensor(self, name: str) -> torch.Tensor:
        """A CPU tensor over the memory-mapped array: env processes reading the same entry share its
        pages instead of each holding a copy. Read-only by contract: nothing writes into split data."""
        with warnings.catch_warnings():
            # torch warns that a read-only mapping gives a tensor it would not stop writes to.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(self.array(name))

    def file(self, name: str) -> Path:
        """An extra file of the entry, checksummed first (it was only size-checked on load)."""
        expected = json.loads((self.path / MANIFEST).read_text())["files"].get(name)
        if expected is None:
            raise KeyError(f"cache entry {self.path} has no file {name!r}")
        if _sha256(self.path / name) != expected["sha256"]:
            raise ValueError(f"{self.path / name} does not match its checksum; delete {self.path} to rebuild it")
        return self.path / name


class ArrayStore:
    """Entries under one root directory; see the module docstring for the guarantees."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def entry_path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def load(self, kind: str, key: str, required: tuple[str, ...] = ()) -> CacheEntry | None:
        """The entry if it exists, is intact and has the ``required`` arrays; else it is removed and
        None returned."""
        path = self.entry_path(kind, key)
        if not path.exists():
            return None
        problem = self._verify(path, required)
        if problem is None:
            manifest = json.loads((path / MANIFEST).read_text())
            checksums = {name: file["sha256"] for name, file in manifest["files"].items()}
            return CacheEntry(path, tuple(manifest["arrays"]), manifest["meta"], checksums)
        logger.warning("cache entry %s is damaged (%s); removing it so it is rebuilt", path, problem)
        shutil.rmtree(path, ignore_errors=True)
        return None

    def get_or_build(self, kind: str, description: dict, build: Callable[[Path], tuple[dict[str, np.ndarray], dict]],
                     required: tuple[str, ...] = ()) -> CacheEntry:
        """Load the entry for ``description``, or build it: ``build(folder)`` returns (arrays, meta) and
        may write extra files into ``folder`` (they are checksummed like the arrays). ``required``:
        the arrays the caller will read; an entry without one of them is rebuilt."""
        key = content_key(description)
        entry = self.load(kind, key, required)
        if entry is not None:
            return entry
        target = self.entry_path(kind, key)
        with build_lock(target):
            entry = self.load(kind, key, required)  # built by the process that held the lock before us
            if entry is None:
                self._build(target, description, build)
                entry = self.load(kind, key, required)
        if entry is None:
            raise RuntimeError(f"cache entry {target} could not be stored intact")
        return entry

    @staticmethod
    def _build(target: Path, description: dict, build) -> None:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            arrays, meta = build(staging)
            for name, array in arrays.items():
                np.save(staging / f"{name}.npy", np.ascontiguousarray(array))
            manifest = {"description": description, "arrays": sorted(arrays), "files": file_manifest(staging), "meta": meta,
                        "meta_sha256": meta_checksum(meta)}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def _verify(path: Path, required: tuple[str, ...] = ()) -> str | None:
        """None if the manifest is whole (a part missing or of the wrong type means a rebuild), its
        files are present with their sizes and checksums, its metadata matches its checksum (entries
        written before metadata was checksummed have none), and every ``required`` array is there."""
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            files, meta = manifest["files"], manifest["meta"]
            for name in manifest["arrays"]:
                if f"{name}.npy" not in files:
                    return f"array {name} is not in the manifest"
            if "meta_sha256" in manifest and meta_checksum(meta) != manifest["meta_sha256"]:
                return "its metadata does not match its checksum"
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            return f"unreadable manifest: {type(error).__name__}: {error}"
        missing = sorted(set(required) - set(manifest["arrays"]))
        if missing:
            return f"arrays {missing} are missing"
        arrays = {f"{name}.npy" for name in manifest["arrays"]}
        return check_files(path, files, lambda name: name in arrays)
