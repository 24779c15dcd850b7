"""The README's commands and Python examples, in order, against the two local models started by
``avengers local start`` (slow: real llama.cpp servers). The demo's outcome files they use are
made here by a smaller ``avengers collect`` run, so the test does not need the whole demo."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
AFTER = "### The two local models, any time"

pytestmark = pytest.mark.slow


def readme_blocks() -> list[tuple[str, str]]:
    """(language, body) of every bash/python block from the local-models section on."""
    text = README.read_text()
    text = text[text.index(AFTER) :]
    return re.findall(r"```(bash|python)\n(.*?)```", text, flags=re.S)


def commands(body: str) -> list[list[str]]:
    return [
        shlex.split(line, comments=True)
        for line in body.splitlines()
        if line.startswith("avengers ")
    ]


def avengers(args: list[str], env: dict[str, str], timeout: float = 900) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "avengers", *args[1:]],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert r.returncode == 0, f"{shlex.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def serve_briefly(args: list[str], env: dict[str, str]) -> None:
    """``avengers serve`` runs until stopped: check it answers, then stop it."""
    p = subprocess.Popen([sys.executable, "-m", "avengers", *args[1:]], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert p.poll() is None, "avengers serve exited"
            try:
                if httpx.get("http://127.0.0.1:8000/v1/models", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        pytest.fail("avengers serve did not answer within 120 s")
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_readme_runs_in_order_against_the_local_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avengers.bundled import demo_questions_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AVENGERS_STATE", str(tmp_path / "state"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AVENGERS_STATE": str(tmp_path / "state")}
    # the demo's outcome files, smaller: 40 train and 20 test questions, one sample each
    demo = tmp_path / "runs" / "demo" / "local-models"
    demo.mkdir(parents=True)
    lines = [x for x in demo_questions_path().read_text().splitlines() if x.strip()]
    (demo / "q_train.jsonl").write_text("\n".join(lines[:40]) + "\n")
    (demo / "q_test.jsonl").write_text("\n".join(lines[40:60]) + "\n")
    blocks = readme_blocks()
    ns: dict[str, Any] = {}
    started = False
    try:
        for lang, body in blocks:
            if lang == "python":
                exec(compile(body, "README.md", "exec"), ns)
                continue
            for args in commands(body):
                if args[:2] == ["avengers", "serve"]:
                    serve_briefly(args, env)
                    continue
                out = avengers(args, env)
                if args[:3] == ["avengers", "local", "start"]:
                    started = True
                    assert (tmp_path / "endpoints.yaml").is_file(), out
                    for part in ("train", "test"):
                        avengers(["avengers", "collect", "-q", str(demo / f"q_{part}.jsonl"),
                                  "-e", "endpoints.yaml", "-n", "1",
                                  "-o", str(demo / f"{part}.jsonl")], env)  # fmt: skip
    finally:
        if started:
            avengers(["avengers", "local", "stop"], env)
    assert ns["result"].model in ("smollm2-135m", "gemma3-270m")
    assert json.loads((tmp_path / "my-router" / "config.json").read_text())
    assert (tmp_path / "outcomes.jsonl").is_file()
