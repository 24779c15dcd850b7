from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from avengers.cli import app
from toy import toy_rows
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    (d / "train.jsonl").write_text("\n".join(json.dumps(r) for r in toy_rows()) + "\n")
    return d


def test_train_route_evaluate(toy_files: Path) -> None:
    out = toy_files / "router"
    r = runner.invoke(
        app, ["train", "--data", str(toy_files / "train.jsonl"), "--k", "3", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "trained on 30 queries x 3 models, 3 clusters" in r.output
    assert (out / "config.json").is_file()

    r = runner.invoke(app, ["route", "--router", str(out), "--json", "How do I roast vegetables?"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload[0]["models"] == ["chef-model"]
    assert payload[0]["ranking"][0]["cost"] == pytest.approx(0.5)

    r = runner.invoke(app, ["route", "--router", str(out), "What is 6 times 7?"])
    assert r.exit_code == 0
    chosen = [line for line in r.output.splitlines() if line.startswith("*")]
    assert len(chosen) == 1 and "math-model" in chosen[0]

    plots = toy_files / "plots"
    r = runner.invoke(
        app,
        [
            "evaluate",
            "--router",
            str(out),
            "--data",
            str(toy_files / "train.jsonl"),
            "--json",
            "--plots",
            str(plots),
            "--train-data",
            str(toy_files / "train.jsonl"),
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.output[r.output.index("{") :])
    assert res["accuracy"] == pytest.approx(res["oracle"], abs=0.15)
    assert res["n_queries"] == 30
    names = sorted(Path(p).name for p in res["plots"])
    assert names == ["accuracy_vs_k.png", "alpha_curve.png", "cluster_heatmap.png"]
    assert all(Path(p).stat().st_size > 5000 for p in res["plots"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "missing.jsonl", "--out", "x"], "missing.jsonl: no such file"),
        (["route", "--router", "no/such/dir/here", "hi"], "no such router folder"),
        (["route", "--router", "nowhere", "hi"], "no such router folder"),
        (
            ["train", "--data", "bundled:train", "--out", "x", "--alpha", "2"],
            "alpha must be in [0, 1]",
        ),
        (
            ["train", "--data", "bundled:train", "--out", "x", "--duplicates", "x"],
            "--duplicates must be",
        ),
    ],
)
def test_user_mistakes_are_one_line(args: list[str], message: str) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 2
    assert message in r.output
    assert "Traceback" not in r.output


def test_bad_data_row_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"query": "q", "scores": {"a": 3}}\n')
    r = runner.invoke(
        app, ["train", "--data", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "r")]
    )
    assert r.exit_code == 2
    assert "row 1: field 'scores.a': score 3.0 is outside [0, 1]" in r.output
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_pretrained_router_via_console_script() -> None:
    exe = Path(sys.executable).with_name("avengers")
    out = subprocess.run(
        [str(exe), "route", "--json", "Write a Python function that merges two dictionaries."],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    d = json.loads(out.stdout)[0]
    assert len(d["ranking"]) == 9
    assert d["ranking"][0]["performance"] >= d["ranking"][-1]["performance"]
    assert min(abs(d["ranking"][0]["cost"] - p) for p in (0.1, 0.2, 0.9)) < 1e-9


def test_info_and_help() -> None:
    r = runner.invoke(app, ["info"])
    assert r.exit_code == 0 and "clusters: 64" in r.output and "bundled:dcrouter/train" in r.output
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("train", "evaluate", "route"):
        assert cmd in r.output


def test_train_tunes_settings_by_cross_validation(toy_files: Path, tmp_path: Path) -> None:
    out = tmp_path / "tuned"
    r = runner.invoke(
        app,
        ["train", "--data", str(toy_files / "train.jsonl"), "--out", str(out),
         "--tune", "k=1,3", "--tune", "shrinkage=0,10", "--folds", "3"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "3-fold cross-validation on the training data" in r.output
    rows = [line for line in r.output.splitlines() if "k=" in line]
    assert len(rows) == 4 and sum(line.startswith("*") for line in rows) == 1
    best = next(line for line in rows if line.startswith("*"))
    assert "k=3 " in best and float(best.split()[-1]) > 0.9  # three topics: three clusters
    baseline = next(line for line in r.output.splitlines() if "best single model" in line)
    assert 0.3 < float(baseline.split()[-1]) < 0.5
    params = json.loads((out / "config.json").read_text())["params"]
    assert params["n_clusters"] == 3


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("clusters=2", "expected NAME=V1,V2,... with NAME one of k,"),
        ("k=two", "k takes int values"),
        ("k=", "no values"),
        ("k=0,2", "n_clusters must be a positive integer"),
    ],
)
def test_bad_tune_spec_is_one_line(
    toy_files: Path, tmp_path: Path, spec: str, message: str
) -> None:
    r = runner.invoke(
        app,
        ["train", "--data", str(toy_files / "train.jsonl"), "--out", str(tmp_path / "r"),
         "--tune", spec],
    )  # fmt: skip
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "r").exists()


def test_train_says_when_k_exceeds_the_data(toy_files: Path, tmp_path: Path) -> None:
    r = runner.invoke(
        app,
        ["train", "--data", str(toy_files / "train.jsonl"), "--k", "50", "--out", str(tmp_path)],
    )
    assert r.exit_code == 0, r.output
    assert (
        "K=50 is more than the 30 distinct training queries allow; fitted 30 clusters" in r.output
    )
    assert "30 clusters" in r.output


COMMANDS = (
    "train",
    "evaluate",
    "calibrate",
    "route",
    "info",
    "collect",
    "answer",
    "serve",
    "update",
    "snapshot",
    "distill",
    "local",
)


def test_python_m_avengers_help_lists_every_command() -> None:
    import typer.main

    assert set(typer.main.get_command(app).commands) == set(COMMANDS)
    out = subprocess.run(
        [sys.executable, "-m", "avengers", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    listed = {m.group(1) for m in re.finditer(r"^\W*([a-z]+)\s{2,}\S", out, re.MULTILINE)}
    assert listed >= set(COMMANDS), out


def test_console_script_entry_point_loads_main() -> None:
    from importlib.metadata import entry_points

    from avengers.cli import main

    (ep,) = entry_points(group="console_scripts", name="avengers")
    assert ep.value == "avengers.cli:main"
    assert ep.load() is main


def test_distill_rejects_bad_settings(tmp_path: Path) -> None:
    r = runner.invoke(app, ["distill", "--out", str(tmp_path / "s"), "--pca-dims", "-1"])
    assert r.exit_code == 2 and "--pca-dims must be >= 0" in r.output
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_distill_makes_a_static_embedder_that_trains_a_router(
    toy_files: Path, tmp_path: Path
) -> None:
    """Run as a user would: separate processes sharing one AVENGERS_CACHE."""
    import os

    env = {**os.environ, "AVENGERS_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "avengers", *args], env=env, capture_output=True, text=True
        )

    r = cli("distill", "--name", "static-toy", "--pca-dims", "32", "--vocabulary-from",
            str(toy_files / "train.jsonl"), "--min-count", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "--embedder static:static-toy" in r.stdout
    assert f"wrote {tmp_path / 'cache' / 'static' / 'static-toy'}" in r.stdout
    router_dir = tmp_path / "router"
    r = cli("train", "--data", str(toy_files / "train.jsonl"), "--k", "3", "--embedder",
            "static:static-toy", "--out", str(router_dir))  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = json.loads((router_dir / "config.json").read_text())
    assert cfg["embedder"]["dimension"] == 32
    assert cfg["embedder"]["name"] == "static:static-toy"
    r = cli("route", "What is 12 times 7?", "--router", str(router_dir))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cluster" in r.stdout


@pytest.mark.parametrize(("command", "expected"), [("train", "true"), ("info", "false")])
def test_tokenizer_threads_only_for_train(
    command: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import avengers.cli as cli

    seen: list[str | None] = []
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    monkeypatch.setattr(
        cli, "app", lambda **kw: seen.append(os.environ.get("TOKENIZERS_PARALLELISM"))
    )
    cli.main([command, "--help"])
    assert seen == [expected]
    # a user's own setting wins
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    cli.main([command, "--help"])
    assert seen[-1] == "false"


def _help(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    r = subprocess.run([sys.executable, "-m", "avengers", *args, "--help"], env=env,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_help_wraps_descriptions_only_where_the_terminal_ends() -> None:
    """``avengers --help`` lists every command's description as running text: a line breaks
    only where the next word would not fit (never at a docstring's own line breaks), and no RST
    double backticks show, in the list or in any command's own help."""
    out = _help()
    box = out[out.index("Commands") :].splitlines()[1:]
    entries: list[list[str]] = []
    for line in box:
        if not line.startswith("│"):
            break
        inner = line[1 : line.rindex("│")]
        name, text = inner[:12].strip(), inner[12:].rstrip()
        if name:
            entries.append([text])
        else:
            entries[-1].append(text)
        width = len(inner) - 12 - 1  # the description column, less the right padding
    assert len(entries) == 12, out
    for lines in entries:
        for line, after in itertools.pairwise(lines):
            assert len(line.strip()) + 1 + len(after.split()[0]) > width, lines
    assert "``" not in out
    train = _help("train")  # its docstring holds an RST literal and a line break
    assert "``" not in train and "(--stream: a Parquet file larger than memory" in " ".join(
        train.split()
    )
    assert "``" not in _help("local", "start")
