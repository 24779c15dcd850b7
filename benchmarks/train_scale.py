"""Training on a million queries: wall time and peak memory of ``avengers train --stream``, from a
Parquet file to a saved router, with the static embedder.

The million-query set is synthetic but made from the shared data's queries: every dcrouter
training question (5,608) in templated variations (a framing prefix times a closing suffix, 180
combinations), each variation a distinct text, shuffled, 1,000,000 rows. Each row keeps its base
question's outcomes with 5 % of the cells flipped (a score s becomes 1 - s), so no two variations
are copies of each other in text or, mostly, in outcomes. The file is written under
``runs/scale/`` (not committed) in chunks, and reused when it exists.

The training runs as its own process (``python -m avengers train --stream ...``) so its peak
resident memory is the child's maximum RSS (``getrusage(RUSAGE_CHILDREN)``); the wall time is the
child's. Then the saved router is loaded and scored on the dcrouter test split, next to a router
fitted in memory on the 5,608 base questions with the same embedder (a sanity check that the
streamed one learned the same thing, not a quality claim: the variations add no new questions).

    .venv/bin/python benchmarks/train_scale.py [--rows 1000000] [--data-dir ../shared/data]
        [--embedder static] [--chunk-rows 65536] [--precomputed]

``--precomputed`` also writes the file with an ``embedding`` column first (outside the timing, as
an external engine would) and times the training that only clusters and counts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]

PREFIXES = (
    "",
    "Question: ",
    "Please help me with this. ",
    "Q: ",
    "I have a question. ",
    "Can you solve this? ",
    "Task: ",
    "Here is a problem for you. ",
    "Answer the following. ",
    "Help me with this: ",
    "Quick one: ",
    "From my homework: ",
)
SUFFIXES = (
    "",
    " Thanks!",
    " Please explain briefly.",
    " Show your work.",
    " Be concise.",
    " (asked by a student)",
    " I need this for class.",
    " Think step by step.",
    " Give only the final answer.",
    " Explain your reasoning.",
    " This is urgent.",
    " Any help is appreciated.",
    " Keep it short.",
    " I am stuck on this.",
    " Answer carefully.",
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_million(data_dir: Path, out: Path, rows: int, *, seed: int = 0) -> Path:
    """Write ``rows`` templated variations of the dcrouter training questions to ``out``."""
    base = json.loads((data_dir / "llmrouter-dcrouter" / "train.json").read_text())
    models = sorted(base[0]["scores"])
    questions = [r["question"] for r in base]
    scores = np.array([[float(r["scores"][m]) for m in models] for r in base])
    n_var = len(PREFIXES) * len(SUFFIXES)
    if rows > len(base) * n_var:
        raise SystemExit(f"at most {len(base) * n_var} distinct variations")
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(base) * n_var)[:rows]  # distinct (question, variation) pairs
    tmp = out.with_suffix(".tmp")
    writer = None
    step = 100_000
    for lo in range(0, rows, step):
        ids = pick[lo : lo + step]
        q_idx, v_idx = ids // n_var, ids % n_var
        texts = [
            PREFIXES[v // len(SUFFIXES)] + questions[q] + SUFFIXES[v % len(SUFFIXES)]
            for q, v in zip(q_idx.tolist(), v_idx.tolist(), strict=True)
        ]
        s = scores[q_idx].copy()
        flip = rng.random(s.shape) < 0.05
        s[flip] = 1.0 - s[flip]
        table = pa.table(
            {
                "query": pa.array(texts, pa.string()),
                "scores": pa.StructArray.from_arrays(
                    [pa.array(s[:, j]) for j in range(len(models))], names=models
                ),
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table, row_group_size=65_536)
    assert writer is not None
    writer.close()
    tmp.rename(out)
    return out


def add_embeddings(src: Path, out: Path, embedder: str, chunk: int) -> float:
    """The external engine's job, on one machine: ``src`` plus an ``embedding`` column."""
    from avengers.embedding.embedders import resolve_embedder

    emb = resolve_embedder(embedder)
    t0 = time.perf_counter()
    writer = None
    for batch in pq.ParquetFile(src).iter_batches(batch_size=chunk):
        X = emb.embed(batch.column("query").to_pylist())
        col = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1])
        table = pa.Table.from_batches([batch]).append_column("embedding", col)
        if writer is None:
            writer = pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return time.perf_counter() - t0


def train(data: Path, out: Path, embedder: str, chunk: int) -> tuple[float, float, float]:
    """Run ``avengers train --stream`` as a child; (wall seconds, child peak RSS in GB, child CPU
    seconds: on a shared machine the wall time also counts the time other programs had the
    cores)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'shared'}:{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "avengers", "train", "--stream", "--data", str(data)]
    cmd += ["--embedder", embedder, "--chunk-rows", str(chunk), "--out", str(out)]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, cpu0 = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"training failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    log(proc.stdout.strip())
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime - cpu0
    if peak <= before:
        log("note: the peak RSS of this child did not exceed an earlier child's")
    return wall, peak / 1024 / 1024, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--embedder", default="static")
    ap.add_argument("--chunk-rows", type=int, default=65_536)
    ap.add_argument("--precomputed", action="store_true")
    args = ap.parse_args()

    from avengers import Router, evaluate
    from avengers.training.datasets import load_dcrouter

    folder = ROOT / "runs" / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"queries-{args.rows}.parquet"
    if not data.exists():
        log(f"writing {args.rows:,} templated queries to {data} ...")
        t0 = time.perf_counter()
        make_million(args.data_dir, data, args.rows)
        log(f"written in {time.perf_counter() - t0:.0f} s ({data.stat().st_size / 1e6:.0f} MB)")
    load = os.getloadavg()[0]
    log(f"training (load average {load:.1f} on {os.cpu_count()} cores) ...")
    wall, peak, cpu = train(data, folder / "router", args.embedder, args.chunk_rows)
    rows = [("end to end (embed + cluster + count)", wall, peak, cpu)]
    if args.precomputed:
        pre = folder / f"queries-{args.rows}-embedded.parquet"
        if not pre.exists():
            log("writing the embedding column (the external engine's step, not timed) ...")
            add_embeddings(data, pre, args.embedder, args.chunk_rows)
        rows.append(
            ("precomputed vectors (cluster + count)",
             *train(pre, folder / "router-pre", args.embedder, args.chunk_rows))
        )  # fmt: skip

    train_set = load_dcrouter("train", args.data_dir, with_price=False)
    test = load_dcrouter("test", args.data_dir, with_price=False)
    streamed = Router.from_pretrained(folder / "router")
    emb = streamed.get_embedder()
    Y = emb.embed(test.queries)
    full = Router(embedder=emb).fit(train_set)
    print(
        f"\nrows: {args.rows:,}  embedder: {streamed.embedder_name_}  chunk rows: {args.chunk_rows:,}"
    )
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} at start")
    print(f"{'run':40} {'wall':>9} {'CPU time':>9} {'peak RSS':>9}")
    for name, w, p, c in rows:
        print(f"{name:40} {w / 60:5.1f} min {c / 60:5.1f} min {p:7.2f} GB")
    print("goal: <= 10 min, <= 4 GB on 2 cores")
    print("\ndcrouter test accuracy (sanity check):")
    print(
        f"  streamed on {args.rows:,} variations   {evaluate(streamed, test, embeddings=Y).accuracy:.3f}"
    )
    print(
        f"  in memory on the 5,608 base questions {evaluate(full, test, embeddings=Y).accuracy:.3f}"
    )


if __name__ == "__main__":
    main()
