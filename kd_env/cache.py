"""A content-addressed, crash-safe store of numpy arrays on disk (teacher outputs, frozen embeddings).

An entry is a folder ``ROOT/KIND/KEY`` where KEY hashes everything the arrays depend on. Each array
is a plain ``.npy`` file, so readers can ``np.load(path, mmap_mode="r")`` it and share pages between
processes. ``manifest.json`` lists every file with its size and SHA-256 and is written last; the entry
is built in a staging folder renamed into place, so a crash leaves no entry, never half of one. An
entry whose files do not match its manifest (truncated, edited) is removed and rebuilt, never used.
A valid entry is never recomputed. Arrays are checksummed on every load; other files (large model
weights) are size-checked on load and checksummed when read through ``CacheEntry.file``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def content_key(description: dict) -> str:
    """A stable hash of a JSON-friendly description (key order does not matter)."""
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """A valid entry: its folder, its arrays' names and the metadata its builder returned."""

    path: Path
    arrays: tuple[str, ...]
    meta: dict

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

    def load(self, kind: str, key: str) -> CacheEntry | None:
        """The entry if it exists and is intact; a damaged entry is removed and None returned."""
        path = self.entry_path(kind, key)
        if not path.exists():
            return None
        problem = self._verify(path)
        if problem is None:
            manifest = json.loads((path / MANIFEST).read_text())
            return CacheEntry(path, tuple(manifest["arrays"]), manifest["meta"])
        logger.warning("cache entry %s is damaged (%s); removing it so it is rebuilt", path, problem)
        shutil.rmtree(path, ignore_errors=True)
        return None

    def get_or_build(self, kind: str, description: dict, build: Callable[[Path], tuple[dict[str, np.ndarray], dict]]) -> CacheEntry:
        """Load the entry for ``description``, or build it: ``build(folder)`` returns (arrays, meta) and
        may write extra files into ``folder`` (they are checksummed like the arrays)."""
        key = content_key(description)
        entry = self.load(kind, key)
        if entry is not None:
            return entry
        target = self.entry_path(kind, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
        try:
            arrays, meta = build(staging)
            for name, array in arrays.items():
                np.save(staging / f"{name}.npy", np.ascontiguousarray(array))
            files = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(staging.iterdir())}
            manifest = {"description": description, "arrays": sorted(arrays), "files": files, "meta": meta}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
            try:
                staging.rename(target)
            except OSError:  # another process stored the same entry first; its copy is as good
                if self.load(kind, key) is None:
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        entry = self.load(kind, key)
        if entry is None:
            raise RuntimeError(f"cache entry {target} could not be stored intact")
        return entry

    @staticmethod
    def _verify(path: Path) -> str | None:
        """None if every file listed in the manifest is present with its size and checksum."""
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            files = manifest["files"]
            for name in manifest["arrays"]:
                if f"{name}.npy" not in files:
                    return f"array {name} is not in the manifest"
        except (OSError, ValueError, KeyError, TypeError) as error:
            return f"unreadable manifest: {error}"
        arrays = {f"{name}.npy" for name in manifest["arrays"]}
        for name, expected in files.items():
            file = path / name
            if not file.is_file():
                return f"{name} is missing"
            if file.stat().st_size != expected["size"]:
                return f"{name} has {file.stat().st_size} bytes, expected {expected['size']}"
            if name in arrays and _sha256(file) != expected["sha256"]:
                return f"{name} does not match its checksum"
        return None
