"""User data files: TSV, a delimiter option, header-less files, JSON Lines, and the error that names the columns."""

import json

import pytest
from tiny_text import sentiment_rows

from kd_env.tasks import TaskConfig, load_task


def write_rows(path, rows, delimiter, header=True):
    lines = [delimiter.join(rows[0])] if header else []
    lines += [delimiter.join(str(v) for v in row.values()) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_tsv_file_with_quotes_in_text(tmp_path):
    rows = sentiment_rows(120)
    rows[0] = {"text": 'the "film" was good', "label": "pos"}
    path = write_rows(tmp_path / "reviews.tsv", rows, "\t")
    for name in (f"tsv:{path}", f"csv:{path}"):  # a .tsv file is tab-separated under either prefix
        task = load_task(name)
        assert task.class_names == ("neg", "neu", "pos")
        texts = [t for split in task.splits.values() for t in split.texts]
        assert 'the "film" was good' in texts and len(texts) == 120


def test_csv_prefix_on_a_tab_separated_file_points_to_tsv(tmp_path):
    path = write_rows(tmp_path / "spam.txt", sentiment_rows(60), "\t")
    with pytest.raises(ValueError, match=r"looks tab-separated .*use tsv:"):
        load_task(f"csv:{path}")
    assert sum(len(s) for s in load_task(f"tsv:{path}").splits.values()) == 60


def test_delimiter_option(tmp_path):
    path = write_rows(tmp_path / "reviews.txt", sentiment_rows(90), ";")
    task = load_task(f"csv:{path}", TaskConfig(delimiter=";"))
    assert sum(len(s) for s in task.splits.values()) == 90


def test_header_less_file_with_column_names(tmp_path):
    rows = [{"label": r["label"], "text": r["text"]} for r in sentiment_rows(90)]
    path = write_rows(tmp_path / "reviews.tsv", rows, "\t", header=False)
    task = load_task(f"tsv:{path}", TaskConfig(column_names=["y", "review"], text_column="review", label_column="y"))
    assert sum(len(s) for s in task.splits.values()) == 90  # the first line is data
    with pytest.raises(ValueError, match=r"no column 'text'; columns: .*column_names"):
        load_task(f"tsv:{path}")


def test_json_lines_file_and_folder(tmp_path):
    rows = sentiment_rows(120)
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert load_task(f"jsonl:{path}").class_names == ("neg", "neu", "pos")
    folder = tmp_path / "data"
    folder.mkdir()
    for name, part in (("train", rows[:80]), ("validation", rows[80:100]), ("test", rows[100:])):
        (folder / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in part))
    task = load_task(f"json:{folder}")
    assert [len(task.splits[s]) for s in ("train", "dev", "test")] == [80, 20, 20]


def test_missing_column_error_is_one_line_listing_columns(tmp_path):
    path = write_rows(tmp_path / "reviews.csv", [{"review": r["text"], "y": r["label"]} for r in sentiment_rows(30)], ",")
    with pytest.raises(ValueError) as error:
        load_task(f"csv:{path}")
    assert "\n" not in str(error.value) and "['review', 'y']" in str(error.value)


def test_reader_options_rejected_for_json(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in sentiment_rows(30)))
    with pytest.raises(ValueError, match="apply to csv/tsv"):
        load_task(f"jsonl:{path}", TaskConfig(delimiter=";"))
