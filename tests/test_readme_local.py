"""The README's commands and Python examples, then every doc's (router, answering, cli, serve,
scale, LangChain, LlamaIndex, online learning: every bash and python block, tagged ones such as
``python costs`` included), in order, in one folder, against the two local models started by
``avengers local start`` (slow: real llama.cpp servers). The demo's outcome files they use are
made here by a smaller ``avengers collect`` run, so the test does not need the whole demo.

Models this small answer poorly: the test checks that every command and example runs and gives
well-formed results, not that the answers are right. Deviations from a user's session, each
because a command runs until stopped or repeats a long run: ``avengers serve`` runs in the
background while the examples that talk to it run; ``avengers local stop`` (end of the README)
runs at the very end; the ``$ avengers collect`` lines in docs/cli.md's output blocks are the
collection made here (smaller), and its other ``$ avengers ...`` lines run as shown; the
placeholder response id of docs/online.md's ``curl`` line is replaced by the id of a real
answer, as a user would paste one. Not run: docs/benchmarks.md's research benchmark commands
(hours on the shared research data, and they rewrite the committed plots)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
AFTER = "### The two local models, any time"
# In the README's order of the docs; online.md (not listed there) last.
DOCS = [
    "router.md", "answering.md", "cli.md", "serve.md", "scale.md", "langchain.md",
    "llamaindex.md", "online.md",
]  # fmt: skip
LOCAL = ("smollm2-135m", "gemma3-270m")
# Doc blocks known to fail against the local models: (doc, kind) -> the error they raise.
KNOWN_FAILING: dict[tuple[str, str], str] = {}

pytestmark = pytest.mark.slow


def readme_blocks() -> list[tuple[str, str]]:
    """(language, body) of every bash/python block from the local-models section on."""
    text = README.read_text()
    text = text[text.index(AFTER) :]
    return re.findall(r"```(bash|python)\n(.*?)```", text, flags=re.S)


def doc_blocks(doc: str) -> list[tuple[str, str]]:
    """(kind, body) of a doc's runnable blocks in order: bash, python (tagged ones too:
    ``python tools``, ``python costs``, ``python feedback``, ...), the ``yaml tools`` endpoint
    file the tool examples read, and ``text`` output blocks (their ``$ avengers`` lines are
    commands)."""
    text = (ROOT / "docs" / doc).read_text()
    return re.findall(r"```(bash|python(?: \w+)?|yaml tools|text)\n(.*?)```", text, re.S)


def commands(body: str) -> list[list[str]]:
    """The ``avengers`` commands of a bash block, continuation lines joined."""
    return [
        shlex.split(line, comments=True)
        for line in body.replace("\\\n", " ").splitlines()
        if line.startswith("avengers ")
    ]


def curl_commands(body: str) -> list[str]:
    """The ``curl`` commands of a bash block, continuation lines joined."""
    joined = body.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.startswith("curl ")]


def shown_commands(body: str) -> list[list[str]]:
    """The ``$ avengers ...`` lines of an output block."""
    return [shlex.split(x[2:]) for x in body.splitlines() if x.startswith("$ avengers ")]


def avengers(args: list[str], env: dict[str, str], timeout: float = 1800) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "avengers", *args[1:]],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert r.returncode == 0, f"{shlex.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def option(args: list[str], name: str, default: str) -> str:
    return args[args.index(name) + 1] if name in args else default


@dataclass
class Session:
    """One user's shell: the environment, the background server, what ran."""

    env: dict[str, str]
    server: subprocess.Popen[bytes] | None = None
    ran: list[str] = field(default_factory=list)

    def serve(self, args: list[str]) -> None:
        """Start ``avengers serve`` in the background (stopping the one before) and wait until it
        answers; a server on another port than 8000 is only checked, then stopped."""
        port = int(option(args, "--port", "8000"))
        if port == 8000:
            self.stop_server()
        p = subprocess.Popen([sys.executable, "-m", "avengers", *args[1:]], env=self.env)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert p.poll() is None, f"{shlex.join(args)} exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            p.terminate()
            pytest.fail(f"{shlex.join(args)} did not answer within 180 s")
        if port == 8000:
            self.server = p
        else:
            p.terminate()
            p.wait(timeout=60)
        self.ran.append(shlex.join(args))

    def curl(self, command: str) -> str:
        """Run a doc's ``curl`` line against the background server, its placeholder response id
        replaced by the id of a real answer (no server key set, so ``$KEY`` is empty)."""
        assert self.server is not None, f"no server for {command}"
        if "chatcmpl-..." in command:
            reply = httpx.post(
                "http://127.0.0.1:8000/v1/chat/completions",
                json={"model": "avengers", "n_samples": 1,
                      "messages": [{"role": "user", "content": "What is 17 times 23?"}]},
                timeout=300,
            )  # fmt: skip
            assert reply.status_code == 200, reply.text
            command = command.replace("chatcmpl-...", reply.json()["id"])
        r = subprocess.run(["bash", "-c", command], env={**self.env, "KEY": ""},
                           capture_output=True, text=True, timeout=300)  # fmt: skip
        assert r.returncode == 0, f"{command} failed:\n{r.stdout}\n{r.stderr}"
        self.ran.append(command)
        return r.stdout

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait(timeout=60)
            self.server = None

    def run(self, args: list[str]) -> str:
        if args[:2] == ["avengers", "serve"]:
            self.serve(args)
            return ""
        if args[:3] == ["avengers", "local", "stop"]:
            return ""  # at the very end
        out = avengers(args, self.env)
        self.ran.append(shlex.join(args))
        return out


def exec_python(body: str, ns: dict[str, Any], where: str) -> None:
    exec(compile(body, where, "exec"), ns)


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AVENGERS_STATE", str(tmp_path / "state"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AVENGERS_STATE": str(tmp_path / "state")}
    s = Session(env)
    try:
        yield s
    finally:
        s.stop_server()
        r = subprocess.run([sys.executable, "-m", "avengers", "local", "stop"], env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr


def make_demo_files(tmp_path: Path, session: Session) -> None:
    """The demo's outcome files, smaller: 40 train and 20 test questions, one sample each."""
    from avengers.training.bundled import demo_questions_path

    demo = tmp_path / "runs" / "demo" / "local-models"
    demo.mkdir(parents=True, exist_ok=True)
    lines = [x for x in demo_questions_path().read_text().splitlines() if x.strip()]
    (demo / "questions_train.jsonl").write_text("\n".join(lines[:40]) + "\n")
    (demo / "questions_test.jsonl").write_text("\n".join(lines[40:60]) + "\n")
    (demo / "endpoints.yaml").write_text((tmp_path / "endpoints.yaml").read_text())
    for part in ("train", "test"):
        session.run(["avengers", "collect", "-q", str(demo / f"questions_{part}.jsonl"),
                     "-e", "endpoints.yaml", "-n", "1", "-o", str(demo / f"{part}.jsonl")])  # fmt: skip


def test_readme_and_docs_run_in_order_against_the_local_models(
    tmp_path: Path, session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = time.monotonic()
    # ---------------------------------------------------------------- README
    ns: dict[str, Any] = {}
    for lang, body in readme_blocks():
        if lang == "python":
            exec_python(body, ns, "README.md")
            continue
        for args in commands(body):
            out = session.run(args)
            if args[:3] == ["avengers", "local", "start"]:
                assert (tmp_path / "endpoints.yaml").is_file(), out
                status = session.run(["avengers", "local", "status"])
                assert status.count("running") == 2, status
                make_demo_files(tmp_path, session)
    # the README's Answerer: the model named, and a vote over the numbers the samples gave
    result = ns["result"]
    assert result.model in LOCAL and result.answer_type == "number", result.summary()
    assert result.votes and all(re.fullmatch(r"-?\d+", a) for a in result.votes), result.votes
    from avengers import Router

    assert set(Router.from_pretrained(tmp_path / "my-router").models_) == set(LOCAL)
    assert (tmp_path / "outcomes.jsonl").is_file()
    readme_done = time.monotonic()

    # ---------------------------------------------------------------- docs
    printed: dict[str, str] = {}
    for doc in DOCS:
        ns = {}
        for kind, body in doc_blocks(doc):
            if kind == "yaml tools":
                name = "endpoints-tools.yaml"
                assert body.startswith(f"# {name}") or (tmp_path / name).exists(), body
                (tmp_path / name).write_text(body)
            elif kind.startswith("python"):
                if "[...]" in body:  # a fragment (docs/serve.md's extra_body form)
                    continue
                if (doc, kind) in KNOWN_FAILING:
                    with pytest.raises(ValueError, match=KNOWN_FAILING[doc, kind]):
                        exec_python(body, ns, f"docs/{doc}")
                    continue
                exec_python(body, ns, f"docs/{doc}")
            elif kind == "bash":
                for args in commands(body):
                    session.run(args)
                for command in curl_commands(body):
                    printed[f"{doc} curl"] = session.curl(command)
            else:  # output blocks: run the commands they show (collect: done above, smaller)
                for args in shown_commands(body):
                    if args[1] not in ("collect", "local"):
                        session.run(args)
        session.stop_server()
        printed[doc] = capsys.readouterr().out
    # well-formed results, not right answers
    assert "smollm2-135m" in printed["answering.md"] or "gemma3-270m" in printed["answering.md"]
    assert re.search(r"-> (smollm2-135m|gemma3-270m)", printed["answering.md"])
    assert re.search(r"\ba=-?\d+ b=-?\d+", printed["serve.md"])  # structured output parsed
    assert re.search(r"\ba=-?\d+ b=-?\d+", printed["langchain.md"])
    # docs/router.md: the dcrouter evaluation, sweeps and budgets printed their tables
    for shown in ("gain over best single", "K=128", "alpha=0.4", "'format': 'avengers-router'"):
        assert shown in printed["router.md"], shown
    # conversations: the second turn kept the first turn's model (server header, and in process)
    assert re.search(r"\b(smollm2-135m|gemma3-270m) \1 1$", printed["serve.md"], re.M)
    assert re.search(r"\b(smollm2-135m|gemma3-270m) \1 True$", printed["router.md"], re.M)
    # costs: smollm2-135m is priced in answering.md's example, gemma3-270m not (no anchor at the
    # start: the streamed answer printed before it ends without a newline, e.g. "12smollm2...")
    assert re.search(r"(smollm2-135m \d\S*|gemma3-270m None) \d\S*$", printed["answering.md"], re.M)
    # feedback through a server that keeps it: accepted, for the answer's own id
    for doc in ("langchain.md", "llamaindex.md"):
        assert printed[doc].rstrip().endswith("True"), printed[doc]
        # tools: a call to the named tool was made, with whole numbers for both arguments
        assert re.search(r"^\[\('multiply', \{'a': -?\d+, 'b': -?\d+\}\)\]$", printed[doc], re.M)
        # cost cap at 10 samples of the cheaper model: it answered; the rating went to it too
        assert printed[doc].count("True\n") >= 2, printed[doc]
        assert "no candidate model fits max_cost" in printed[doc]
    assert re.search(r"\bmultiply\(\{\\?\"a\\?\": ?-?\d+", printed["langchain.md"])  # the vote
    assert re.search(r"^multiply \{'a': -?\d+, 'b': -?\d+\}$", printed["serve.md"], re.M)
    assert '"seq"' in printed["online.md curl"], printed["online.md curl"]
    assert "applied 1 rating(s)" in printed["online.md"]
    for folder in ("big-router", "my-router-v2", "online-router", "refit-router"):
        assert (tmp_path / folder / "config.json").is_file(), folder
    ran = "\n".join(session.ran)
    for needed in ("local start", "collect --questions bundled", "train", "evaluate", "route",
                   "answer", "info", "serve", "train --stream", "snapshot", "update",
                   "train --data outcome-log.jsonl --fill-from"):  # fmt: skip
        assert f"avengers {needed}" in ran, needed
    with capsys.disabled():
        print(f"\nREADME: {readme_done - t0:.0f}s, docs: {time.monotonic() - readme_done:.0f}s")
