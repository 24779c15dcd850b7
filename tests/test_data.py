from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from avengers import DataError, load_outcomes, outcomes_from_rows
from avengers.training.data import OutcomeData, as_outcomes


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    suffix = path.suffix
    if suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    elif suffix == ".csv":
        import csv

        keys = list(rows[0])
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()})
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


LONG = [
    {"query": "q1", "model": "a", "score": 1, "cost": 0.5},
    {"query": "q1", "model": "a", "score": 0, "cost": 0.7},  # repeated sample: averaged
    {"query": "q1", "model": "b", "score": 0.25, "cost": 2.0},
    {"query": "q2", "model": "a", "score": 0.0, "cost": 0.5},
    {"query": "q2", "model": "b", "score": 1.0, "cost": 2.0},
]


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".parquet"])
def test_long_rows_from_every_format(tmp_path: Path, suffix: str) -> None:
    d = load_outcomes(write(tmp_path / f"o{suffix}", LONG))
    assert d.queries == ["q1", "q2"]
    assert d.models == ["a", "b"]
    np.testing.assert_allclose(d.scores, [[0.5, 0.25], [0.0, 1.0]])
    assert d.costs is not None
    np.testing.assert_allclose(d.costs, [[0.6, 2.0], [0.5, 2.0]])


WIDE = [
    {"question": "q1", "scores": {"a": 1, "b": 0.0}, "costs": {"a": 1.0, "b": 3.0}},
    {"question": "q2", "scores": {"b": 1.0, "a": 0.5}, "costs": {"a": 1.0, "b": 3.0}},
]


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".parquet"])
def test_wide_rows_from_every_format(tmp_path: Path, suffix: str) -> None:
    d = load_outcomes(write(tmp_path / f"o{suffix}", WIDE))
    assert d.models == ["a", "b"]
    # key order differs between rows: values are matched by name, not position
    np.testing.assert_allclose(d.scores, [[1.0, 0.0], [0.5, 1.0]])
    assert d.costs is not None and d.costs[1, 1] == 3.0


def test_missing_model_is_nan_and_reported() -> None:
    d = outcomes_from_rows(
        [{"query": "q1", "scores": {"a": 1, "b": 0}}, {"query": "q2", "scores": {"a": 0}}]
    )
    assert math.isnan(d.scores[1, 1])
    assert d.summary()["missing"] == {"b": 1}
    assert any("'b' has no outcome for 1 of 2" in n for n in d.notes)
    # means skip the unknown cell instead of counting it as 0
    assert d.mean_scores()["b"] == 0.0 and d.mean_scores()["a"] == 0.5


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"query": "q", "scores": {"a": 1.5}}],
            r"row 1: field 'scores.a': score 1.5 is outside \[0, 1\]",
        ),
        ([{"query": "q", "scores": {"a": float("nan")}}], r"row 1: field 'scores.a' is NaN"),
        (
            [{"query": "q", "scores": {"a": "high"}}],
            r"row 1: field 'scores.a': 'high' is not a number",
        ),
        (
            [{"query": "q", "scores": {"a": 1}}, {"scores": {"a": 1}}],
            r"row 2: missing field 'query'",
        ),
        ([{"query": "q", "model": "a"}], r"row 1: missing field 'score'"),
        ([{"query": "q", "model": "a", "score": -0.1}], r"row 1: field 'score': score -0.1"),
        ([{"query": "", "scores": {"a": 1}}], r"row 1: field 'query' must be a non-empty string"),
        ([{"query": "q", "scores": {}}], r"row 1: field 'scores' is empty"),
        (
            [{"query": "q", "scores": {"a": 1}, "costs": {"a": -1}}],
            r"row 1: field 'costs.a': cost -1.0",
        ),
        ([{"text": "q"}], r"needs either 'scores'"),
        (
            [{"query": "q", "scores": {"a": 1}}, {"query": "q", "scores": {"a": 0}}],
            r"row 2: duplicated query \(first seen in row 1\)",
        ),
    ],
)
def test_bad_rows_name_row_and_field(rows: list[dict[str, object]], message: str) -> None:
    with pytest.raises(DataError, match=message):
        outcomes_from_rows(rows, source="t.json")


def test_duplicates_can_be_merged_or_kept_first() -> None:
    rows = [{"query": "q", "scores": {"a": 1}}, {"query": "q", "scores": {"a": 0}}]
    assert outcomes_from_rows(rows, duplicates="mean").scores[0, 0] == 0.5
    assert outcomes_from_rows(rows, duplicates="first").scores[0, 0] == 1.0


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_outcomes(tmp_path / "nope.json")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="the file is empty"):
        load_outcomes(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"query": "q", "model": "a", "score": 1}\n{oops\n')
    with pytest.raises(DataError, match="line 2: invalid JSON"):
        load_outcomes(tmp_path / "bad.jsonl")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DataError, match="unsupported file type"):
        load_outcomes(tmp_path / "x.txt")
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(DataError, match="no rows"):
        load_outcomes(tmp_path / "empty.json")


def test_concat_and_subset() -> None:
    a = outcomes_from_rows([{"query": "q1", "scores": {"a": 1, "b": 0}}], task="t1")
    b = outcomes_from_rows([{"query": "q2", "scores": {"b": 1, "c": 0.5}}], task="t2")
    d = OutcomeData.concat([a, b])
    assert d.models == ["a", "b", "c"]
    assert d.tasks == ["t1", "t2"]
    assert math.isnan(d.scores[0, 2]) and math.isnan(d.scores[1, 0])
    assert d.subset([1]).queries == ["q2"]
    assert as_outcomes(WIDE).models == ["a", "b"]


def test_shared_dcrouter_reads_by_name(data_dir: Path) -> None:
    d = load_outcomes(data_dir / "llmrouter-dcrouter" / "train.json")
    assert len(d) == 5608 and len(d.models) == 9
    means = d.mean_scores()
    assert max(means, key=lambda m: means[m]) == "llama-3.1-nemotron-51b-instruct"
    assert means["llama-3.1-nemotron-51b-instruct"] == pytest.approx(0.621, abs=1e-3)
