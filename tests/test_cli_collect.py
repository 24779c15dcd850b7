"""`avengers collect` and `avengers answer` through the real CLI against a local OpenAI-compatible
server: grading, consensus, resuming after a crash or Ctrl-C, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from avengers import Router
from avengers.cli import app
from fake_openai_server import FakeModel, FakeOpenAIServer
from typer.testing import CliRunner
from waiting import wait_until

runner = CliRunner()

QUESTIONS = [
    {"id": "a1", "question": "What is 2 plus 3?", "answer": "5", "answer_type": "number"},
    {"id": "a2", "question": "What is 4 plus 4?", "answer": "8", "answer_type": "number"},
    {"id": "a3", "question": "What is 10 plus 1?", "answer": "11", "answer_type": "number"},
    {"id": "c1", "question": "Pick one\nA) x\nB) y\nC) z", "answer": "B", "answer_type": "choice"},
    {"id": "c2", "question": "Pick two\nA) x\nB) y\nC) z", "answer": "C", "answer_type": "choice"},
    {"id": "c3", "question": "Pick six\nA) x\nB) y\nC) z", "answer": "A", "answer_type": "choice"},
]
GOLD = {q["question"]: q["answer"] for q in QUESTIONS}


def right(prompt: str, i: int) -> str:
    return f"The answer is {GOLD[prompt]}."


def right_on_numbers(prompt: str, i: int) -> str:
    return (
        right(prompt, i)
        if GOLD[prompt].isdigit()
        else "The answer is (A)."
        if GOLD[prompt] != "A"
        else "B"
    )


def right_on_choices(prompt: str, i: int) -> str:
    return right(prompt, i) if not GOLD[prompt].isdigit() else "The answer is 0."


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    s = FakeOpenAIServer(
        {
            "alpha": FakeModel(answers=right),
            "beta": FakeModel(answers=right_on_numbers),
            "gamma": FakeModel(answers=right_on_choices),
        }
    ).start()
    yield s
    s.stop()


@pytest.fixture
def files(tmp_path: Path, server: FakeOpenAIServer) -> Path:
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    eps = {"endpoints": {m: {"base_url": server.base_url, "max_retries": 0, "timeout": 5}
                         for m in ("alpha", "beta", "gamma")}}  # fmt: skip
    (tmp_path / "e.json").write_text(json.dumps(eps))
    return tmp_path


def collect(files: Path, *extra: str) -> tuple[int, str]:
    r = runner.invoke(app, ["collect", "-q", str(files / "q.jsonl"), "-e", str(files / "e.json"),
                            "-o", str(files / "out.jsonl"), "-n", "2", *extra])  # fmt: skip
    return r.exit_code, r.output


def table(path: Path) -> dict[tuple[str, str], float]:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    return {(r["query"], r["model"]): r["score"] for r in rows}


def test_collect_grades_against_gold_and_summarises(files: Path, server: FakeOpenAIServer) -> None:
    code, out = collect(files)
    assert code == 0, out
    assert re.search(r"alpha\s+12\s+0\s+1\.000", out)
    assert re.search(r"beta\s+12\s+0\s+0\.500", out) and re.search(r"gamma\s+12\s+0\s+0\.500", out)
    t = table(files / "out.jsonl")
    assert len(t) == 18 and t[("What is 2 plus 3?", "beta")] == 1.0
    assert t[("Pick one\nA) x\nB) y\nC) z", "beta")] == 0.0
    rows = [json.loads(x) for x in (files / "out.jsonl").read_text().splitlines()]
    assert {r["grading"] for r in rows} == {"gold"} and all(r["n_samples"] == 2 for r in rows)
    logged = [json.loads(x) for x in (files / "out.jsonl.samples.jsonl").read_text().splitlines()]
    assert len(logged) == 36 and {r["finish_reason"] for r in logged} == {"stop"}
    # the outcome table trains a router directly
    r = runner.invoke(
        app, ["train", "-d", str(files / "out.jsonl"), "--k", "2", "-o", str(files / "r")]
    )
    assert r.exit_code == 0, r.output


def test_consensus_grading_tracks_gold_and_says_so(files: Path, server: FakeOpenAIServer) -> None:
    code, out = collect(files, "--consensus", "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["grading"] == "consensus"
    # two of three models agree on the right answer everywhere: consensus = gold here
    assert summary["consensus_gold_correlation"] == pytest.approx(1.0)
    rows = [json.loads(x) for x in (files / "out.jsonl").read_text().splitlines()]
    assert {r["grading"] for r in rows} == {"consensus"}
    from avengers import load_outcomes

    data = load_outcomes(files / "out.jsonl", duplicates="mean")
    assert any("consensus" in n for n in data.notes)
    # no gold answers at all is fine with --consensus
    (files / "q.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in q.items() if k != "answer"}) + "\n" for q in QUESTIONS)
    )
    code, out = collect(files, "--consensus", "-o", str(files / "nogold.jsonl"))
    assert code == 0, out
    assert "scores are consensus-based" in out


def test_resume_after_a_crashed_endpoint_and_a_torn_line(
    files: Path, server: FakeOpenAIServer
) -> None:
    server.models["gamma"] = FakeModel(fault="500")
    code, out = collect(files)
    assert code == 0 and "12 failed calls" in out
    log = files / "out.jsonl.samples.jsonl"
    with log.open("a") as f:
        f.write('{"id": "a1", "model": "al')  # a crash in the middle of a write
    server.models["gamma"] = FakeModel(answers=right_on_choices)
    server.reset()
    code, out = collect(files)
    assert code == 0, out
    assert server.calls("gamma") == 12 and server.calls("alpha") == 0 == server.calls("beta")
    assert "12 new samples, 24 already logged, 0 failed calls" in out
    assert len(table(files / "out.jsonl")) == 18


def test_resume_after_ctrl_c(files: Path, server: FakeOpenAIServer) -> None:
    for m in server.models.values():
        m.delay = 0.3
    eps = json.loads((files / "e.json").read_text())
    for e in eps["endpoints"].values():
        e["max_concurrency"] = 1
    (files / "e.json").write_text(json.dumps(eps))
    cmd = [sys.executable, "-m", "avengers", "collect", "-q", str(files / "q.jsonl"),
           "-e", str(files / "e.json"), "-o", str(files / "out.jsonl"), "-n", "2"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # a test run started in the background of a shell inherits SIGINT ignored; Ctrl-C reaches a
    # foreground command, so give the child the default disposition
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    log = files / "out.jsonl.samples.jsonl"
    wait_until(
        lambda: log.exists() and len(log.read_text().splitlines()) >= 6,
        60,
        "collect logged 6 samples",
        proc=p,
    )
    assert p.poll() is None, "collect finished before it could be interrupted"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130 and b"Traceback" not in err and b"interrupted" in err
    lines = log.read_text().splitlines()
    assert 6 <= len(lines) < 36 and all(json.loads(x)["text"] for x in lines)
    for m in server.models.values():
        m.delay = 0.0
    server.reset()
    code, out = collect(files)
    assert code == 0, out
    assert f"{36 - len(lines)} new samples, {len(lines)} already logged" in out
    assert sum(server.calls(m) for m in ("alpha", "beta", "gamma")) == 36 - len(lines)


def test_gives_up_on_an_unreachable_endpoint_and_resumes_later(
    files: Path, server: FakeOpenAIServer
) -> None:
    eps = json.loads((files / "e.json").read_text())
    eps["endpoints"]["gamma"].update(base_url="http://127.0.0.1:9/v1", max_concurrency=1)
    (files / "e.json").write_text(json.dumps(eps))
    code, out = collect(files)
    assert code == 3, out
    assert "gave up on gamma" in out and "7 samples were not attempted" in out
    assert "Traceback" not in out
    rows = [json.loads(x) for x in (files / "out.jsonl.samples.jsonl").read_text().splitlines()]
    assert sum(r["model"] == "gamma" for r in rows) == 5  # five failures in a row, then stop
    assert all("error" in r for r in rows if r["model"] == "gamma")
    assert sum("text" in r for r in rows) == 24  # the reachable models finished
    eps["endpoints"]["gamma"]["base_url"] = server.base_url
    (files / "e.json").write_text(json.dumps(eps))
    server.reset()
    code, out = collect(files)
    assert code == 0, out
    assert server.calls("gamma") == 12 and server.calls("alpha") == 0
    assert len(table(files / "out.jsonl")) == 18


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no_questions_file", "question file not found"),
        ("no_gold", "missing field 'answer'"),
        ("bad_endpoints", "not valid JSON"),
        ("down", "calls failed (connection) (gave up on alpha, beta, gamma"),
    ],
)
def test_collect_bad_input_is_one_clear_line(files: Path, change: str, message: str) -> None:
    if change == "no_questions_file":
        (files / "q.jsonl").unlink()
    elif change == "no_gold":
        (files / "q.jsonl").write_text(json.dumps({"question": "What is 1 plus 1?"}) + "\n")
    elif change == "bad_endpoints":
        (files / "e.json").write_text("{not json")
    else:
        eps = json.loads((files / "e.json").read_text())
        for e in eps["endpoints"].values():
            e["base_url"] = "http://127.0.0.1:9/v1"
        (files / "e.json").write_text(json.dumps(eps))
    code, out = collect(files)
    assert code == 2 and message in out and "Traceback" not in out


def test_answer_command(toy_router: Router, tmp_path: Path) -> None:
    s = FakeOpenAIServer(
        {
            "m": FakeModel(answers=["391", "The answer is 391", "390"]),
            "c": FakeModel(answers=["6 minutes"]),
        }
    ).start()
    try:
        toy_router.save_pretrained(tmp_path / "r")
        eps = {"endpoints": {"math-model": {"base_url": s.base_url, "model": "m"},
                             "chef-model": {"base_url": s.base_url, "model": "c"}}}  # fmt: skip
        (tmp_path / "e.json").write_text(json.dumps(eps))
        args = [
            "answer",
            "-r",
            str(tmp_path / "r"),
            "-e",
            str(tmp_path / "e.json"),
            "--no-adaptive",
        ]
        r = runner.invoke(app, [*args, "What is 17 times 23?"])
        assert r.exit_code == 0, r.output
        assert "answer: 391" in r.output and "votes: '391': 7, '390': 3" in r.output
        r = runner.invoke(
            app, [*args, "--json", "--strategy", "direct", "How long do I boil an egg?"]
        )
        payload = json.loads(r.stdout)
        assert payload[0]["model"] == "chef-model" and payload[0]["text"] == "6 minutes"
        r = runner.invoke(app, [*args, "--strategy", "best", "Hi"])
        assert r.exit_code == 2 and "unknown strategy" in r.output
    finally:
        s.stop()
