"""Error paths users meet, each with the message they see: outcome files in every format (wrapped
JSON, bad UTF-8, empty CSV cells, Parquet embedding columns that are ragged, null or not finite),
the local-model lifecycle (a server that exits, one that does not start in time, a port taken by
another program, stale or foreign PIDs) and the feedback store's ``prune``."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from avengers.exceptions import ConfigError, DataError
from avengers.stores.feedback import SQLiteFeedbackStore, UnknownResponseError
from avengers.training.data import iter_parquet_outcomes, load_outcomes
from waiting import wait_until

ROWS = [
    {"query": "What is 2 plus 2?", "scores": {"a": 1.0, "b": 0.0}},
    {"query": "Boil an egg", "scores": {"a": 0.0, "b": 1.0}},
]


# ------------------------------------------------------------------ outcome files


@pytest.mark.parametrize("key", ["rows", "data", "outcomes"])
def test_json_wrapped_in_an_object_is_read(tmp_path: Path, key: str) -> None:
    p = tmp_path / "wrapped.json"
    p.write_text(json.dumps({"meta": {"v": 1}, key: ROWS}))
    d = load_outcomes(p)
    assert d.queries == ["What is 2 plus 2?", "Boil an egg"] and d.models == ["a", "b"]
    np.testing.assert_array_equal(d.scores, [[1.0, 0.0], [0.0, 1.0]])


def test_json_that_is_not_a_list_of_rows(tmp_path: Path) -> None:
    p = tmp_path / "obj.json"
    p.write_text(json.dumps({"rows": "not a list", "items": ROWS}))
    with pytest.raises(DataError) as e:
        load_outcomes(p)
    assert str(e.value) == f"{p}: expected a JSON array of objects"
    p.write_text('[{"query": "q",\n  "scores": {"a": 1}\n')
    with pytest.raises(DataError, match=re.escape(f"{p}: invalid JSON at line 3: ")):
        load_outcomes(p)
    p.write_text(json.dumps([1, 2]))
    with pytest.raises(DataError) as e:
        load_outcomes(p)
    assert str(e.value) == f"{p}: row 1: expected an object, got int"


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_text_that_is_not_utf8(tmp_path: Path, suffix: str) -> None:
    p = tmp_path / f"latin1{suffix}"
    p.write_bytes('[{"query": "Crème brûlée?", "model": "a", "score": 1}]'.encode("latin-1"))
    with pytest.raises(DataError) as e:
        load_outcomes(p)
    assert str(e.value) == f"{p}: not UTF-8 text"


def test_a_directory_is_not_an_outcome_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_outcomes(tmp_path)
    assert (
        str(e.value) == f"{tmp_path}: is a directory, expected a JSON, JSONL, CSV or Parquet file"
    )


def test_empty_csv_cells(tmp_path: Path) -> None:
    p = tmp_path / "long.csv"
    p.write_text(
        "query,model,score,cost\n"
        "What is 2 plus 2?,a,1,0.5\n"
        "What is 2 plus 2?,b,,\n"  # b's outcome unknown: left out, not zero
        "Boil an egg,a,0,\n"  # a known score without a cost
        "Boil an egg,b,1,2\n"
    )
    d = load_outcomes(p)
    assert d.models == ["a", "b"]
    np.testing.assert_array_equal(d.scores, [[1.0, np.nan], [0.0, 1.0]])
    assert d.costs is not None
    np.testing.assert_array_equal(d.costs, [[0.5, np.nan], [np.nan, 2.0]])
    assert "model 'b' has no outcome for 1 of 2 queries (left out, not zero)" in d.notes
    p.write_text("query,model,score\nWhat is 2 plus 2?,a,\nWhat is 2 plus 2?,b, \n")
    with pytest.raises(DataError) as e:
        load_outcomes(p)
    assert str(e.value) == f"{p}: query 'What is 2 plus 2?' has no score for any model"
    p.write_text("query,model,score\n,a,1\n")
    with pytest.raises(DataError) as e:
        load_outcomes(p)
    assert str(e.value) == f"{p}: row 1: field 'query' must be a non-empty string"
    p.write_text("query,model,score\nq,,1\n")
    with pytest.raises(DataError) as e:
        load_outcomes(p)
    assert str(e.value) == f"{p}: row 1: field 'model' must be a non-empty string"
    p.write_text("query,model,score\nq,a,yes\n")
    with pytest.raises(DataError) as e:
        load_outcomes(p)
    assert str(e.value) == f"{p}: row 1: field 'score': 'yes' is not a number"
    p.write_text("query,model,score,cost\nq,a,1,-2\n")
    with pytest.raises(DataError) as e:
        load_outcomes(p)
    assert str(e.value) == f"{p}: row 1: field 'cost': cost -2.0 must be a finite number >= 0"


def _parquet(path: Path, embedding: Any, **columns: Any) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(embedding)
    table: dict[str, Any] = {
        "query": [f"question {i}" for i in range(n)],
        "scores": [{"a": 1.0, "b": 0.0} for _ in range(n)],
        **columns,
        "embedding": embedding,
    }
    pq.write_table(pa.table(table), path)
    return path


def _first_error(path: Path, **kwargs: Any) -> str:
    with pytest.raises(DataError) as e:
        list(iter_parquet_outcomes(path, **kwargs))
    return str(e.value)


def test_parquet_embedding_columns(tmp_path: Path) -> None:
    import pyarrow as pa

    good = _parquet(tmp_path / "good.parquet", [[0.5, 1.0], [2.0, -1.0], [0.0, 0.25]])
    chunks = list(iter_parquet_outcomes(good, chunk_rows=2))
    assert [c.start for c in chunks] == [0, 2]
    assert chunks[0].embeddings is not None and chunks[0].embeddings.dtype == np.float32
    np.testing.assert_array_equal(chunks[1].embeddings, [[0.0, 0.25]])
    assert next(iter(iter_parquet_outcomes(good, embedding_column=None))).embeddings is None

    p = _parquet(tmp_path / "ragged.parquet", [[0.5, 1.0], [2.0, 3.0], [0.0], [0.0, 0.25]])
    assert _first_error(p) == f"{p}: rows 1-4: column 'embedding': vectors of different lengths"
    # the chunk that holds the ragged row is named
    assert _first_error(p, chunk_rows=2) == (
        f"{p}: rows 3-4: column 'embedding': vectors of different lengths"
    )
    # a later chunk whose vectors all have another length: the file's rows disagree, named
    p = _parquet(tmp_path / "shorter.parquet", [[0.5, 1.0], [2.0, 3.0], [0.0], [1.0]])
    assert _first_error(p, chunk_rows=2) == (
        f"{p}: rows 3-4: column 'embedding': vectors of length 1 where the rows before have 2"
    )
    p = _parquet(tmp_path / "nan.parquet", [[0.5, float("nan")], [2.0, 1.0]])
    assert _first_error(p) == f"{p}: rows 1-2: column 'embedding' has a missing or non-finite value"
    p = _parquet(tmp_path / "inf.parquet", [[0.5, 1.0], [float("inf"), 1.0]])
    assert _first_error(p) == f"{p}: rows 1-2: column 'embedding' has a missing or non-finite value"
    p = _parquet(tmp_path / "hole.parquet", [[0.5, None], [2.0, 1.0]])
    assert _first_error(p) == f"{p}: rows 1-2: column 'embedding' has a missing or non-finite value"
    p = _parquet(tmp_path / "null.parquet", [[0.5, 1.0], None])
    assert _first_error(p) == f"{p}: rows 1-2: column 'embedding' has an empty (null) vector"
    p = _parquet(tmp_path / "text.parquet", ["0.5, 1.0", "2.0, 1.0"])
    assert (
        _first_error(p) == f"{p}: rows 1-2: column 'embedding' must hold a list of floats per row"
    )
    p = _parquet(tmp_path / "words.parquet", [["x", "y"], ["z", "w"]])
    assert _first_error(p).startswith(f"{p}: rows 1-2: column 'embedding' must hold floats: ")
    p = _parquet(
        tmp_path / "fixed.parquet",
        pa.array([[1.0, 2.0], [3.0, 4.0]], type=pa.list_(pa.float64(), 2)),
    )
    np.testing.assert_array_equal(
        next(iter(iter_parquet_outcomes(p))).embeddings, [[1.0, 2.0], [3.0, 4.0]]
    )


def test_parquet_file_errors(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    missing = tmp_path / "missing.parquet"
    assert _first_error(missing) == f"{missing}: no such file"
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    assert _first_error(junk).startswith(f"{junk}: not a readable Parquet file: ")
    long = tmp_path / "long.parquet"
    pq.write_table(pa.table({"query": ["q"], "model": ["a"], "score": [1.0]}), long)
    assert _first_error(long) == (
        f"{long}: no 'scores' column (long rows with 'model' and 'score' cannot be streamed); "
        "expected query, scores[, costs, task, embedding]"
    )
    noquery = tmp_path / "noquery.parquet"
    pq.write_table(pa.table({"text": ["q"], "scores": [{"a": 1.0}]}), noquery)
    assert _first_error(noquery) == (
        f"{noquery}: no 'query' column (or 'question'/'prompt'); "
        "expected query, scores[, costs, task, embedding]"
    )
    good = _parquet(tmp_path / "good.parquet", [[0.5], [1.0]])
    assert _first_error(good, chunk_rows=0) == "chunk_rows must be >= 1, got 0"
    blank = _parquet(tmp_path / "blank.parquet", [[0.5], [1.0]], query=["q", "  "])
    assert _first_error(blank) == f"{blank}: row 2: field 'query' must be a non-empty string"
    unscored = _parquet(
        tmp_path / "unscored.parquet", [[0.5], [1.0]], scores=[{"a": 1.0}, {"a": None}]
    )
    assert _first_error(unscored) == f"{unscored}: row 2: no score for any model"
    over = _parquet(tmp_path / "over.parquet", [[0.5], [1.0]], scores=[{"a": 1.0}, {"a": 1.5}])
    assert _first_error(over) == f"{over}: row 2: field 'scores.a': score 1.5 is outside [0, 1]"


# ------------------------------------------------------------------ local-model lifecycle


needs_llama_cpp = pytest.mark.skipif(
    find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
)


@needs_llama_cpp
def test_a_local_server_that_exits_at_start_is_reported(tmp_path: Path) -> None:
    from avengers.demo.local import LlamaCppServer

    log = tmp_path / "server.log"
    srv = LlamaCppServer(tmp_path / "no-such-model.gguf", "tiny", log_path=log, startup_timeout=120)
    with pytest.raises(ConfigError) as e:
        srv.start()
    assert re.fullmatch(
        rf"llama\.cpp server for tiny exited \(exit code \d+\) \(log: {re.escape(str(log))}\)",
        str(e.value),
    ), str(e.value)
    assert "no-such-model.gguf" in log.read_text()  # the log says what went wrong


@needs_llama_cpp
def test_a_local_server_that_does_not_start_in_time_is_stopped(tmp_path: Path) -> None:
    from avengers.demo.local import LlamaCppServer

    srv = LlamaCppServer(tmp_path / "m.gguf", "slow", startup_timeout=0)
    with pytest.raises(ConfigError) as e:
        srv.start()
    assert str(e.value) == "llama.cpp server for slow did not start in 0s"
    assert srv.process is None and srv.exit_status() is None  # stopped, nothing left running


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``avengers local`` state (PID file, logs) in a folder of the test's own."""
    folder = tmp_path / "state"
    monkeypatch.setenv("AVENGERS_STATE", str(folder))
    return folder


def _record(folder: Path, pids: dict[str, int | None]) -> None:
    from avengers.demo.local import LOCAL_PORTS

    folder.mkdir(parents=True, exist_ok=True)
    rec = {a: {"pid": pid, "port": LOCAL_PORTS[a]} for a, pid in pids.items()}
    (folder / "local-models.json").write_text(json.dumps(rec))


def _started(proc: subprocess.Popen[bytes], word: bytes) -> None:
    """Wait until ``proc``'s command line shows ``word``: ``Popen`` may return while the kernel
    is still setting up the new program's arguments, when /proc shows an empty command line."""
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    if cmdline.parent.exists():
        wait_until(lambda: word in cmdline.read_bytes(), 10, f"{word!r} in the command line")


def test_stop_local_ignores_stale_and_foreign_pids(state: Path) -> None:
    from avengers.demo.local import local_models, stop_local

    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _started(other, b"time.sleep(60)")
        _record(state, {"smollm2-135m": done.pid, "gemma3-270m": other.pid})
        assert [m.pid for m in local_models()] == [done.pid, other.pid]
        said: list[str] = []
        # a dead PID, and a live process that is not a llama.cpp server: neither is touched
        assert stop_local(echo=said.append) == 0 and said == []
        assert other.poll() is None
        assert not (state / "local-models.json").exists()
        assert [m.pid for m in local_models()] == [None, None]
    finally:
        other.kill()
        other.wait()


def test_stop_local_stops_a_recorded_server(state: Path) -> None:
    from avengers.demo.local import stop_local

    # a process whose command line names llama_cpp.server, as the real ones do
    server = subprocess.Popen(
        [sys.executable, "-c", "import time, sys; time.sleep(60)", "llama_cpp.server"]
    )
    try:
        _started(server, b"llama_cpp.server")
        _record(state, {"smollm2-135m": server.pid, "gemma3-270m": None})
        said: list[str] = []
        assert stop_local(echo=said.append) == 1
        assert said == [f"smollm2-135m: stopped (pid {server.pid})"]
        assert server.wait(10) == -15  # SIGTERM
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_damaged_pid_file_reads_as_nothing_recorded(state: Path) -> None:
    from avengers.demo.local import LOCAL_PORTS, local_models

    state.mkdir(parents=True)
    (state / "local-models.json").write_text("{not json")
    models = local_models()
    assert [(m.alias, m.port, m.pid) for m in models] == [
        (a, p, None) for a, p in LOCAL_PORTS.items()
    ]
    assert models[0].log == state / "smollm2-135m.log"
    assert not models[0].pid_alive()


def test_start_local_refuses_a_port_another_program_holds(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avengers.demo import local

    try:
        local.smollm2_path()
        local.gemma3_path()
    except ConfigError as e:
        pytest.skip(f"the local model packages are not installed: {e}")
    with socket.create_server(("127.0.0.1", 0)) as taken, socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        ports = {"smollm2-135m": taken.getsockname()[1], "gemma3-270m": free.getsockname()[1]}
        free.close()
        monkeypatch.setattr(local, "LOCAL_PORTS", ports)
        with pytest.raises(ConfigError) as e:
            local.start_local(echo=lambda _: None)
    port = ports["smollm2-135m"]
    assert str(e.value) == (
        f"port {port} (for smollm2-135m) is taken by another program; "
        f"stop it (e.g. `lsof -i :{port}`) and rerun"
    )


def test_write_local_endpoints_keeps_a_file_it_did_not_write(tmp_path: Path) -> None:
    from avengers.demo.local import ENDPOINTS_HEADER, write_local_endpoints

    mine = tmp_path / "endpoints.yaml"
    mine.write_text("endpoints: {}\n")
    assert write_local_endpoints(mine) is False
    assert mine.read_text() == "endpoints: {}\n"
    assert write_local_endpoints(mine, force=True) is True
    text = mine.read_text()
    assert text.startswith(ENDPOINTS_HEADER) and "smollm2-135m" in text
    assert write_local_endpoints(mine) is True  # its own file is rewritten


# ------------------------------------------------------------------ feedback.prune


def test_prune_forgets_old_responses_but_keeps_their_ratings(tmp_path: Path) -> None:
    store = SQLiteFeedbackStore(tmp_path / "fb.db")
    try:
        store.remember("old", "a", 1)
        store.rate("old", 0.4)
        time.sleep(0.1)
        middle = time.time()
        time.sleep(1.0)
        store.remember("new", "b", 2)
        assert store.prune(older_than=3600) == 0
        assert store.prune(older_than=time.time() - middle) == 1  # "old" only
        with pytest.raises(UnknownResponseError) as e:
            store.rate("old", 1.0)
        assert str(e.value) == "no response with id 'old' (or it expired)"
        assert store.rate("new", 0.9).model == "b"
        assert [(r.response_id, r.model, r.cluster, r.score) for r in store.ratings()] == [
            ("old", "a", 1, 0.4),
            ("new", "b", 2, 0.9),
        ]
        assert store.prune(older_than=-60) == 1  # everything remembered before a minute from now
        assert store.prune(older_than=0) == 0
    finally:
        store.close()
    # what was pruned stays pruned for the next process
    again = SQLiteFeedbackStore(tmp_path / "fb.db")
    try:
        with pytest.raises(UnknownResponseError):
            again.rate("new", 0.5)
        assert len(again.ratings()) == 2
    finally:
        again.close()


def test_feedback_store_path_in_a_new_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "fb.db"
    store = SQLiteFeedbackStore(path)
    store.close()
    assert path.is_file() and os.path.getsize(path) > 0
