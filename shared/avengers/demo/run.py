"""The whole loop on two real local models, through the real command line.

    python -m avengers.demo --out runs/demo

Starts SmolLM2-135M and Gemma-3-270M with llama.cpp on 127.0.0.1 (ports 8081 and 8082, as
``avengers local start`` does; models already running there are used and left running), splits the
shipped question set into train and test, runs ``avengers collect`` on both (gold-graded), regrades
the training samples by consensus (no new calls) to compare, ``avengers train``, ``avengers
evaluate`` against each single model with plots, ``avengers answer`` on a few test questions with
voting, then compares routing with the best single model by repeated cross-validation over all
questions (with a 95% interval: two tiny models on 130 questions give a noisy comparison), writes
``summary.json``, and stops the servers it started.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ConfigError
from ..training.bundled import demo_questions_path
from .local import (
    LOCAL_PORTS,
    LlamaCppServer,
    demo_endpoints,
    demo_servers,
    describe_exit,
    endpoints_yaml,
    local_models,
    port_taken,
)

ANSWER_SAMPLES = 5
"""Samples per answered question in the voting step."""

MEANING = (
    "accuracy = mean score of the chosen model's answers on questions the router was not "
    "trained on (1 = all right); best single = always the model best on the training "
    "questions; oracle = the right model for every question, in hindsight"
)


def cross_validated_comparison(
    outcome_files: list[Path], k: int, *, repeats: int = 5, folds: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Routed against best single model on *all* collected questions: ``repeats`` times
    ``folds``-fold cross-validation, each question scored when held out; the 95% interval of the
    difference is a bootstrap over questions. More honest than one small test split."""
    import warnings

    from ..exceptions import ClusterCountWarning
    from ..router import Router
    from ..training.data import OutcomeData, load_outcomes

    data = OutcomeData.concat([load_outcomes(p) for p in outcome_files])
    S = np.nan_to_num(data.scores, nan=0.0)
    X = Router().get_embedder().embed(list(data.queries))
    n = len(data)
    routed, single = np.zeros(n), np.zeros(n)
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        order = rng.permutation(n)
        for f in range(folds):
            test = order[f::folds]
            train = np.setdiff1d(order, test)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ClusterCountWarning)
                r = Router(n_clusters=k).fit(data.subset(train), embeddings=X[train])
            best = int(np.argmax(np.nanmean(data.scores[train], axis=0)))
            routed[test] += S[test, r.estimate(X[test]).best] / repeats
            single[test] += S[test, best] / repeats
    diff = routed - single
    boot = [diff[rng.integers(0, n, n)].mean() for _ in range(2000)]
    low, high = np.percentile(boot, [2.5, 97.5])
    return {
        "n_questions": n,
        "repeats": repeats,
        "folds": folds,
        "routed": round(float(routed.mean()), 3),
        "best_single": round(float(single.mean()), 3),
        "difference": round(float(diff.mean()), 3),
        "ci95": [round(float(low), 3), round(float(high), 3)],
    }


def _run(args: list[str], *, capture: bool = False) -> str:
    shown = "avengers " + " ".join(shlex.quote(a) for a in args)
    print(f"\n$ {shown}", flush=True)
    cmd = [sys.executable, "-m", "avengers", *args]
    if capture:
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        return out
    subprocess.run(cmd, check=True)
    return ""


def split_questions(src: Path, out_dir: Path, test_share: float, seed: int) -> tuple[Path, Path]:
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    rng.shuffle(rows)
    n_test = round(len(rows) * test_share)
    paths = []
    for name, part in (("train", rows[n_test:]), ("test", rows[:n_test])):
        p = out_dir / f"questions_{name}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in part))
        paths.append(p)
    return paths[0], paths[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m avengers.demo",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    ap.add_argument("--out", type=Path, default=Path("runs/demo"))
    ap.add_argument("--samples", type=int, default=3, help="samples per question and model")
    ap.add_argument("--k", type=int, default=8, help="clusters")
    ap.add_argument("--limit", type=int, default=None, help="use only this many questions")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)

    src = demo_questions_path()
    if args.limit:
        lines = src.read_text().splitlines()[: args.limit]
        src = out / "questions_all.jsonl"
        src.write_text("\n".join(lines) + "\n")
    q_train, q_test = split_questions(src, out, 1 / 3, args.seed)

    running = {m.alias for m in local_models() if m.answers()}
    ports = {a: p if a in running or not port_taken(p) else 0 for a, p in LOCAL_PORTS.items()}
    servers = [s for s in demo_servers(out / "logs", ports=ports) if s.alias not in running]
    if running:
        print(f"using the local models already running: {', '.join(sorted(running))}")
    try:
        summary = _demo(args, out, servers, ports, q_train, q_test)
    except subprocess.CalledProcessError as e:
        step = e.cmd[3]  # [python, -m, avengers, <command>, ...]
        print(f"\ndemo stopped: `avengers {step}` failed ({describe_exit(e.returncode)}).",
              file=sys.stderr)  # fmt: skip
        for s in servers:
            status = s.exit_status()
            if status:
                print(f"  the llama.cpp server for {s.alias} had died ({status}); "
                      f"its log: {s.log_path}", file=sys.stderr)  # fmt: skip
        print(f"  what was collected is kept in {out}; rerun to resume.", file=sys.stderr)
        return 1
    except ConfigError as e:
        print(f"\ndemo stopped: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ndemo interrupted; what was collected is kept in {out}; rerun to resume.",
              file=sys.stderr)  # fmt: skip
        return 130
    finally:
        for s in servers:
            s.stop()
        if servers:
            print(
                "stopped the llama.cpp servers this demo started; `avengers local start` brings "
                f"them back on the same ports (endpoints: {out / 'endpoints.yaml'})",
                flush=True,
            )
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    ev, cv = summary["evaluation"], summary["cross_validated"]
    print(f"\n{MEANING}.")
    print(f"held-out split ({ev['n_queries']} questions): routed {ev['accuracy']:.3f} vs best "
          f"single ({ev['best_single_model']}) {ev['best_single']:.3f}; oracle "
          f"{ev['oracle']:.3f}")  # fmt: skip
    low, high = cv["ci95"]
    verdict = (
        "within noise: these two tiny models are too alike, and 130 questions too few, to tell"
        if low <= 0 <= high
        else "routing is better"
        if low > 0
        else "routing is worse"
    )
    print(f"cross-validated over all {cv['n_questions']} questions ({cv['repeats']} x "
          f"{cv['folds']}-fold): routed {cv['routed']:.3f} vs best single "
          f"{cv['best_single']:.3f}, difference {cv['difference']:+.3f} (95% interval "
          f"{low:+.3f} to {high:+.3f}): {verdict}")  # fmt: skip
    per_model = {m: _round(v) for m, v in ev["per_model"].items()}
    print(f"per model (held-out split): {json.dumps(per_model)}")
    print(f"plots: {out / 'plots'}   summary: {out / 'summary.json'}   ({summary['seconds']}s)")
    return 0


def _demo(
    args: argparse.Namespace,
    out: Path,
    servers: list[LlamaCppServer],
    ports: dict[str, int],
    q_train: Path,
    q_test: Path,
) -> dict[str, Any]:
    """Start the servers and run every step; the caller stops the servers."""
    for s in servers:
        print(f"starting llama.cpp server for {s.alias} ({s.model_path.name})", flush=True)
        t0 = time.perf_counter()
        s.start()
        print(f"  {s.alias} ready at {s.base_url} ({time.perf_counter() - t0:.0f}s)", flush=True)
    eps = out / "endpoints.yaml"
    eps.write_text(endpoints_yaml(demo_endpoints(servers)))
    n = str(args.samples)
    _run(["collect", "-q", str(q_train), "-e", str(eps), "-o", str(out / "train.jsonl"), "-n", n])
    _run(["collect", "-q", str(q_test), "-e", str(eps), "-o", str(out / "test.jsonl"), "-n", n])
    consensus = json.loads(
        _run(
            ["collect", "-q", str(q_train), "-e", str(eps), "--consensus", "--json",
             "--log", str(out / "train.jsonl.samples.jsonl"),
             "-o", str(out / "train_consensus.jsonl"), "-n", n],
            capture=True,
        )
    )  # fmt: skip
    print(
        "consensus grading of the training samples (no new calls): correlation with gold "
        f"grades r = {_fmt(consensus['consensus_gold_correlation'])}",
        flush=True,
    )
    router = out / "router"
    _run(["train", "-d", str(out / "train.jsonl"), "--k", str(args.k), "-o", str(router)])
    _run(["evaluate", "-r", str(router), "-d", str(out / "test.jsonl"),
          "--plots", str(out / "plots"), "--train-data", str(out / "train.jsonl")])  # fmt: skip
    evaluation = json.loads(
        _run(
            ["evaluate", "-r", str(router), "-d", str(out / "test.jsonl"), "--json"],
            capture=True,
        )
    )
    print("\ncross-validating routed vs best single on all collected questions ...", flush=True)
    cv = cross_validated_comparison([out / "train.jsonl", out / "test.jsonl"], args.k)
    test_qs = [json.loads(x) for x in q_test.read_text().splitlines() if x.strip()]
    picks = [q["question"] for q in test_qs[:3]]
    answers = json.loads(
        _run(["answer", "-r", str(router), "-e", str(eps), "-n", str(ANSWER_SAMPLES), "--json",
              *picks],
             capture=True)
    )  # fmt: skip
    print(f"\nanswers with voting ({ANSWER_SAMPLES} samples, self-consistency):")
    for q, a in zip(test_qs[:3], answers, strict=True):
        first = a["samples"][0]["answer"] if a["samples"] else None
        print(
            f"- {q['question'].splitlines()[0]}\n  gold {q['answer']!r}, voted {a['answer']!r} "
            f"by {a['model']} (votes {a['votes']}, first sample said {first!r})"
        )
    return {
        "samples": args.samples,
        "answer_samples": ANSWER_SAMPLES,
        "evaluation": evaluation,
        "cross_validated": cv,
        "consensus_gold_correlation": _round(consensus["consensus_gold_correlation"]),
        "answers": [
            {"question": q["question"], "gold": q["answer"], "answer": a["answer"],
             "model": a["model"], "votes": a["votes"]}
            for q, a in zip(test_qs[:3], answers, strict=True)
        ],
        "plots": sorted(str(p) for p in (out / "plots").glob("*.png")),
    }  # fmt: skip


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


if __name__ == "__main__":
    sys.exit(main())
