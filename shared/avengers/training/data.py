"""Outcome data: which candidate model did how well (and at what cost) on which training query.

Two row shapes are accepted, from JSON (an array of objects), JSONL, CSV or Parquet files, or from
Python objects:

* **long**: one row per (query, model) with ``query``, ``model``, ``score`` and optionally ``cost``.
  Several rows for the same query and model (repeated samples) are averaged.
* **wide**: one row per query with ``query`` and a ``scores`` mapping model -> score, optionally a
  ``costs`` mapping model -> cost. In CSV files the mappings are JSON strings.

``question`` and ``prompt`` are accepted as names for ``query``. An optional ``task`` (or
``dataset``) field is kept for per-task reports. Scores must lie in [0, 1]. A model missing for some
queries is allowed: its cell is NaN, reported by :meth:`OutcomeData.summary`, and every estimate
skips it (it is never read as a 0).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..exceptions import DataError

QUERY_KEYS = ("query", "question", "prompt")
TASK_KEYS = ("task", "dataset")
Duplicates = Literal["error", "mean", "first"]


@dataclass
class OutcomeData:
    """A query-by-model table of outcomes. ``scores[i, j]`` is model ``j``'s score on query ``i``
    (NaN where unknown); ``costs`` has the same shape or is None when no costs were given."""

    queries: list[str]
    models: list[str]
    scores: np.ndarray
    costs: np.ndarray | None = None
    tasks: list[str] | None = None
    source: str = "<memory>"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n, m = len(self.queries), len(self.models)
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if self.scores.shape != (n, m):
            raise DataError(f"{self.source}: scores shape {self.scores.shape} != ({n}, {m})")
        if self.costs is not None:
            self.costs = np.asarray(self.costs, dtype=np.float64)
            if self.costs.shape != (n, m):
                raise DataError(f"{self.source}: costs shape {self.costs.shape} != ({n}, {m})")
        if self.tasks is not None and len(self.tasks) != n:
            raise DataError(f"{self.source}: {len(self.tasks)} task labels for {n} queries")
        if len(set(self.models)) != m:
            raise DataError(f"{self.source}: model names repeat: {self.models}")

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def missing(self) -> np.ndarray:
        """Boolean mask of unknown outcomes."""
        return np.isnan(self.scores)

    def subset(self, index: Sequence[int] | np.ndarray) -> OutcomeData:
        idx = np.asarray(index)
        return OutcomeData(
            queries=[self.queries[i] for i in idx],
            models=list(self.models),
            scores=self.scores[idx],
            costs=None if self.costs is None else self.costs[idx],
            tasks=None if self.tasks is None else [self.tasks[i] for i in idx],
            source=self.source,
            notes=list(self.notes),
        )

    def select_models(self, models: Sequence[str]) -> OutcomeData:
        """The same queries with columns reordered (and NaN-filled) to ``models``."""
        cols = [self.models.index(m) if m in self.models else -1 for m in models]
        scores = np.full((len(self), len(models)), np.nan)
        costs = None if self.costs is None else np.full((len(self), len(models)), np.nan)
        for j, c in enumerate(cols):
            if c >= 0:
                scores[:, j] = self.scores[:, c]
                if costs is not None and self.costs is not None:
                    costs[:, j] = self.costs[:, c]
        return OutcomeData(list(self.queries), list(models), scores, costs, self.tasks, self.source)

    def mean_scores(self) -> dict[str, float]:
        with np.errstate(invalid="ignore"):
            means = np.nanmean(self.scores, axis=0) if len(self) else np.full(len(self.models), 0)
        return {m: float(v) for m, v in zip(self.models, means, strict=True)}

    def summary(self) -> dict[str, Any]:
        """Counts, per-model mean score and cost, and a report of missing outcomes."""
        miss = self.missing.sum(axis=0)
        out: dict[str, Any] = {
            "source": self.source,
            "n_queries": len(self),
            "n_models": len(self.models),
            "mean_score": self.mean_scores(),
            "oracle": float(np.nanmax(np.nan_to_num(self.scores, nan=-np.inf), axis=1).mean())
            if len(self)
            else math.nan,
            "missing": {m: int(k) for m, k in zip(self.models, miss, strict=True) if k},
            "has_costs": self.costs is not None,
            "notes": list(self.notes),
        }
        if self.costs is not None:
            with np.errstate(invalid="ignore"):
                c = np.nanmean(self.costs, axis=0)
            out["mean_cost"] = {m: float(v) for m, v in zip(self.models, c, strict=True)}
        if self.tasks is not None:
            out["tasks"] = {t: self.tasks.count(t) for t in sorted(set(self.tasks))}
        return out

    @classmethod
    def concat(cls, parts: Sequence[OutcomeData], source: str = "<concat>") -> OutcomeData:
        """Stack datasets with the same (or overlapping) candidate models."""
        if not parts:
            raise DataError("nothing to concatenate")
        models: list[str] = []
        for p in parts:
            models += [m for m in p.models if m not in models]
        aligned = [p.select_models(models) for p in parts]
        has_cost = all(p.costs is not None for p in parts)
        tasks: list[str] | None = None
        if all(p.tasks is not None for p in parts):
            tasks = [t for p in aligned for t in (p.tasks or [])]
        return cls(
            queries=[q for p in aligned for q in p.queries],
            models=models,
            scores=np.vstack([p.scores for p in aligned]),
            costs=np.vstack([p.costs for p in aligned if p.costs is not None])
            if has_cost
            else None,
            tasks=tasks,
            source=source,
            notes=[n for p in parts for n in p.notes],
        )


# --------------------------------------------------------------------------- reading files


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a JSON, JSONL, CSV or Parquet file")
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                for key in ("rows", "data", "outcomes"):
                    if isinstance(data.get(key), list):
                        data = data[key]
                        break
            if not isinstance(data, list):
                raise DataError(f"{path}: expected a JSON array of objects")
            return data
        if suffix in (".jsonl", ".ndjson"):
            rows = []
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path}: line {n}: invalid JSON ({e.msg})") from None
            return rows
        if suffix == ".csv":
            csv.field_size_limit(1 << 30)
            with path.open(newline="", encoding="utf-8") as f:
                return [dict(r) for r in csv.DictReader(f)]
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return list(pq.read_table(path).to_pylist())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except DataError:
        raise
    except Exception as e:  # parquet/csv library errors
        raise DataError(f"{path}: could not read {suffix} file: {e}") from None
    raise DataError(f"{path}: unsupported file type {suffix!r} (use .json, .jsonl, .csv, .parquet)")


def _number(value: Any, where: str, name: str, *, unit: bool) -> float:
    if isinstance(value, bool):
        value = float(value)
    if isinstance(value, str):
        s = value.strip()
        if s == "":
            return math.nan
        try:
            value = float(s)
        except ValueError:
            raise DataError(f"{where}: field '{name}': {value!r} is not a number") from None
    if not isinstance(value, (int, float)):
        raise DataError(f"{where}: field '{name}': {value!r} is not a number")
    v = float(value)
    if math.isnan(v):
        raise DataError(f"{where}: field '{name}' is NaN")
    if unit and not 0.0 <= v <= 1.0:
        raise DataError(f"{where}: field '{name}': score {v} is outside [0, 1]")
    if not unit and (v < 0 or math.isinf(v)):
        raise DataError(f"{where}: field '{name}': cost {v} must be a finite number >= 0")
    return v


def _mapping(value: Any, where: str, name: str) -> Mapping[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(f"{where}: field '{name}' is not a JSON object") from None
    if not isinstance(value, Mapping):
        raise DataError(f"{where}: field '{name}' must map model name to number")
    return value


def _query_of(row: Mapping[str, Any], where: str) -> str:
    for key in QUERY_KEYS:
        if key in row:
            q = row[key]
            if not isinstance(q, str) or not q.strip():
                raise DataError(f"{where}: field '{key}' must be a non-empty string")
            return q
    raise DataError(f"{where}: missing field 'query' (or 'question'/'prompt')")


def _task_of(row: Mapping[str, Any]) -> str | None:
    for key in TASK_KEYS:
        if row.get(key) not in (None, ""):
            return str(row[key])
    return None


def outcomes_from_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    source: str = "<rows>",
    duplicates: Duplicates = "error",
    task: str | None = None,
) -> OutcomeData:
    """Build :class:`OutcomeData` from long or wide rows (the shape is detected from the first
    row). ``duplicates`` decides what a repeated query in wide rows does: raise (default), average
    the rows, or keep the first. ``task`` labels every row that has no task of its own."""
    rows = list(rows)
    if not rows:
        raise DataError(f"{source}: no rows")
    first = rows[0]
    if not isinstance(first, Mapping):
        raise DataError(f"{source}: row 1: expected an object, got {type(first).__name__}")
    wide = "scores" in first
    if not wide and "model" not in first:
        raise DataError(
            f"{source}: row 1: needs either 'scores' (wide rows) or 'model' and 'score' (long rows)"
        )

    # (query) -> model -> [sum, n]; insertion order of queries is kept
    score_acc: dict[str, dict[str, list[float]]] = {}
    cost_acc: dict[str, dict[str, list[float]]] = {}
    first_row: dict[str, int] = {}
    tasks: dict[str, str | None] = {}
    models: list[str] = []
    any_cost = False
    notes: list[str] = []
    consensus = 0

    for i, row in enumerate(rows, 1):
        where = f"{source}: row {i}"
        if not isinstance(row, Mapping):
            raise DataError(f"{where}: expected an object, got {type(row).__name__}")
        q = _query_of(row, where)
        if wide:
            if "scores" not in row:
                raise DataError(f"{where}: missing field 'scores'")
            sc = _mapping(row["scores"], where, "scores")
            if not sc:
                raise DataError(f"{where}: field 'scores' is empty")
            if q in first_row:
                if duplicates == "error":
                    raise DataError(
                        f"{where}: duplicated query (first seen in row {first_row[q]}); "
                        "pass duplicates='mean' or 'first' to accept repeats"
                    )
                if duplicates == "first":
                    continue
            cs = (
                _mapping(row["costs"], where, "costs") if row.get("costs") not in (None, "") else {}
            )
            items = [
                (str(m), _number(v, where, f"scores.{m}", unit=True), cs.get(m))
                for m, v in sc.items()
            ]
        else:
            for key in ("model", "score"):
                if key not in row:
                    raise DataError(f"{where}: missing field '{key}'")
            m = row["model"]
            if not isinstance(m, str) or not m:
                raise DataError(f"{where}: field 'model' must be a non-empty string")
            items = [(m, _number(row["score"], where, "score", unit=True), row.get("cost"))]
        first_row.setdefault(q, i)
        if row.get("grading") == "consensus":
            consensus += 1
        t = _task_of(row) or task
        tasks.setdefault(q, t)
        qs = score_acc.setdefault(q, {})
        qc = cost_acc.setdefault(q, {})
        for m, s, c in items:
            if m not in models:
                models.append(m)
            if math.isnan(s):  # empty CSV cell: unknown outcome
                continue
            acc = qs.setdefault(m, [0.0, 0.0])
            acc[0] += s
            acc[1] += 1
            if c not in (None, ""):
                any_cost = True
                cv = _number(c, where, f"costs.{m}" if wide else "cost", unit=False)
                cacc = qc.setdefault(m, [0.0, 0.0])
                cacc[0] += cv
                cacc[1] += 1

    if consensus:
        notes.append(
            f"{consensus} of {len(rows)} rows are consensus-graded: scores measure agreement with "
            "the majority answer across models, not correctness against gold answers"
        )
    queries = list(score_acc)
    n, mcount = len(queries), len(models)
    scores = np.full((n, mcount), np.nan)
    costs = np.full((n, mcount), np.nan) if any_cost else None
    col = {m: j for j, m in enumerate(models)}
    for i, q in enumerate(queries):
        for m, (s, k) in score_acc[q].items():
            scores[i, col[m]] = s / k
        if costs is not None:
            for m, (c, k) in cost_acc[q].items():
                costs[i, col[m]] = c / k
    repeats = len(rows) - n if wide else 0
    if repeats and duplicates != "error":
        notes.append(f"{repeats} repeated queries were merged ({duplicates})")
    miss = np.isnan(scores).sum(axis=0)
    for m, k in zip(models, miss, strict=True):
        if k:
            notes.append(f"model '{m}' has no outcome for {k} of {n} queries (left out, not zero)")
    if (np.isnan(scores).all(axis=1)).any():
        bad = int(np.isnan(scores).all(axis=1).argmax())
        raise DataError(f"{source}: query {queries[bad][:60]!r} has no score for any model")
    task_list = [tasks[q] or "" for q in queries]
    return OutcomeData(
        queries=queries,
        models=models,
        scores=scores,
        costs=costs,
        tasks=task_list if any(task_list) else None,
        source=source,
        notes=notes,
    )


def load_outcomes(
    path: str | Path | Sequence[str | Path],
    *,
    duplicates: Duplicates = "error",
    task: str | None = None,
) -> OutcomeData:
    """Read outcome data from one file or several (stacked; each file's name becomes its task
    label when rows carry none)."""
    if isinstance(path, (str, Path)):
        p = Path(path)
        return outcomes_from_rows(
            _read_rows(p), source=str(p), duplicates=duplicates, task=task or None
        )
    parts = [load_outcomes(p, duplicates=duplicates, task=task or Path(p).stem) for p in path]
    return OutcomeData.concat(parts, source=", ".join(str(p) for p in path))


def as_outcomes(data: OutcomeData | str | Path | Sequence[Any]) -> OutcomeData:
    """Accept :class:`OutcomeData`, a path, a list of paths or a list of row mappings."""
    if isinstance(data, OutcomeData):
        return data
    if isinstance(data, (str, Path)):
        return load_outcomes(data)
    seq = list(data)
    if seq and all(isinstance(x, (str, Path)) for x in seq):
        return load_outcomes(seq)
    return outcomes_from_rows(seq)


# --------------------------------------------------------------------------- Parquet in chunks

DEFAULT_CHUNK_ROWS = 65_536
"""Rows read at a time by :func:`iter_parquet_outcomes`."""


@dataclass
class OutcomeChunk:
    """A slice of a Parquet outcome file: rows ``start`` to ``start + len(data)`` (0-based) as
    :class:`OutcomeData` (its models are the ones this slice names), and their precomputed
    embeddings (float32, one row per query) when the file has an embedding column."""

    start: int
    data: OutcomeData
    embeddings: np.ndarray | None = None


def parquet_row_count(path: str | Path) -> int:
    """The number of rows of a Parquet file (from its footer, without reading the rows)."""
    return int(_open_parquet(Path(path)).metadata.num_rows)


def iter_parquet_outcomes(
    path: str | Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    embedding_column: str | None = "embedding",
) -> Iterator[OutcomeChunk]:
    """Read a Parquet file of wide outcome rows ``chunk_rows`` at a time, in file order.

    Columns: ``query`` (or ``question``/``prompt``), ``scores`` (a struct with one field per
    model, which is what pyarrow, pandas and Spark write for a dict or struct column, or a map from
    model name to score), optionally ``costs`` (same form), ``task`` (or ``dataset``), and
    ``embedding_column`` (a list of floats per row, e.g. vectors an external engine computed). A
    missing or null cell is an unknown outcome. Each row is one observation: repeated queries are
    not merged. Long rows (one per query and model) cannot be read in chunks, since one query's
    rows may fall in different chunks."""
    p = Path(path)
    pf = _open_parquet(p)
    names = pf.schema_arrow.names
    qkey = next((k for k in QUERY_KEYS if k in names), None)
    layout = f"query, scores[, costs, task, {embedding_column or 'embedding'}]"
    if qkey is None:
        raise DataError(f"{p}: no 'query' column (or 'question'/'prompt'); expected {layout}")
    if "scores" not in names:
        hint = (
            " (long rows with 'model' and 'score' cannot be streamed)" if "model" in names else ""
        )
        raise DataError(f"{p}: no 'scores' column{hint}; expected {layout}")
    if chunk_rows < 1:
        raise DataError(f"chunk_rows must be >= 1, got {chunk_rows}")
    tkey = next((k for k in TASK_KEYS if k in names), None)
    ekey = embedding_column if embedding_column and embedding_column in names else None
    columns = [qkey, "scores"] + [c for c in ("costs", tkey, ekey) if c and c in names]
    start, dimension = 0, None
    try:
        batches = pf.iter_batches(batch_size=chunk_rows, columns=columns)
        for batch in batches:
            chunk = _parquet_chunk(batch, start, p, qkey, tkey, ekey)
            if chunk.embeddings is not None:  # one length per file, not only per chunk
                d = chunk.embeddings.shape[1]
                if dimension is not None and d != dimension:
                    raise DataError(
                        f"{p}: rows {start + 1}-{start + batch.num_rows}: column '{ekey}': "
                        f"vectors of length {d} where the rows before have {dimension}"
                    )
                dimension = d
            yield chunk
            start += batch.num_rows
    except DataError:
        raise
    except Exception as e:  # pyarrow errors on a damaged file
        raise DataError(f"{p}: could not read Parquet rows: {e}") from None


def _open_parquet(path: Path) -> Any:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as e:
        raise DataError(f"{path}: not a readable Parquet file: {e}") from None


def _parquet_chunk(
    batch: Any, start: int, path: Path, qkey: str, tkey: str | None, ekey: str | None
) -> OutcomeChunk:
    import pyarrow.compute as pc

    n = batch.num_rows
    where = f"{path}: rows {start + 1}-{start + n}"
    q = batch.column(qkey)
    blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(q)), 0), True)
    if pc.any(blank).as_py():
        row = start + int(np.flatnonzero(np.asarray(blank))[0]) + 1
        raise DataError(f"{path}: row {row}: field '{qkey}' must be a non-empty string")
    queries = q.to_pylist()
    models, scores = _model_table(batch.column("scores"), where, "scores")
    bad = ~np.isnan(scores) & ((scores < 0) | (scores > 1))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(
            f"{path}: row {start + r + 1}: field 'scores.{models[c]}': score {scores[r, c]} "
            "is outside [0, 1]"
        )
    empty = np.isnan(scores).all(axis=1)
    if empty.any():
        raise DataError(f"{path}: row {start + int(empty.argmax()) + 1}: no score for any model")
    costs = None
    if "costs" in batch.schema.names:
        cmodels, ctable = _model_table(batch.column("costs"), where, "costs")
        costs = np.full_like(scores, np.nan)
        for j, m in enumerate(cmodels):
            if m in models:
                costs[:, models.index(m)] = ctable[:, j]
        badc = ~np.isnan(costs) & ((costs < 0) | ~np.isfinite(costs))
        if badc.any():
            r, c = np.argwhere(badc)[0]
            raise DataError(
                f"{path}: row {start + r + 1}: field 'costs.{models[c]}': cost {costs[r, c]} "
                "must be a finite number >= 0"
            )
    tasks = None
    if tkey is not None:
        tasks = ["" if t is None else str(t) for t in batch.column(tkey).to_pylist()]
        if not any(tasks):
            tasks = None
    emb = None if ekey is None else _vectors(batch.column(ekey), where, ekey)
    data = OutcomeData(queries, models, scores, costs, tasks, source=str(path))
    return OutcomeChunk(start=start, data=data, embeddings=emb)


def _model_table(col: Any, where: str, name: str) -> tuple[list[str], np.ndarray]:
    """A struct or map column of numbers as (model names, (n, m) float64 table, NaN unknown)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(col)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    try:
        if pa.types.is_struct(col.type):
            models = [col.type.field(i).name for i in range(col.type.num_fields)]
            fields = col.flatten()  # parent nulls carried into the fields
            cols = [pc.cast(f, pa.float64()).to_numpy(zero_copy_only=False) for f in fields]
            table = np.column_stack(cols) if cols else np.zeros((n, 0))
            return models, np.asarray(table, dtype=np.float64).reshape(n, len(models))
        if pa.types.is_map(col.type):
            offsets = np.asarray(col.offsets)
            keys = pc.dictionary_encode(col.keys)
            models = [str(k) for k in keys.dictionary.to_pylist()]
            idx = np.asarray(keys.indices)
            values = pc.cast(col.items, pa.float64()).to_numpy(zero_copy_only=False)
            table = np.full((n, len(models)), np.nan)
            rows = np.repeat(np.arange(n), np.diff(offsets))
            table[rows, idx] = values
            return models, table
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise DataError(f"{where}: column '{name}' must hold numbers: {e}") from None
    raise DataError(
        f"{where}: column '{name}' must be a struct or a map from model name to number, "
        f"got {col.type}"
    )


def _vectors(col: Any, where: str, name: str) -> np.ndarray:
    """A list-of-floats column as an (n, d) float32 array (every row the same length)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not (
        pa.types.is_list(col.type)
        or pa.types.is_large_list(col.type)
        or pa.types.is_fixed_size_list(col.type)
    ):
        raise DataError(f"{where}: column '{name}' must hold a list of floats per row")
    n = len(col)
    if col.null_count:
        raise DataError(f"{where}: column '{name}' has an empty (null) vector")
    lengths = np.asarray(pc.list_value_length(col))
    d = int(lengths[0]) if n else 0
    if n and (lengths != d).any():
        raise DataError(f"{where}: column '{name}': vectors of different lengths")
    try:
        flat = pc.cast(col.flatten(), pa.float32()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise DataError(f"{where}: column '{name}' must hold floats: {e}") from None
    X = np.asarray(flat, dtype=np.float32).reshape(n, d)
    if not np.isfinite(X).all():
        raise DataError(f"{where}: column '{name}' has a missing or non-finite value")
    return X
