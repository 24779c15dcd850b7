"""What a new user runs into on a first run: every surprise is one clear line (issue 17), and
``avengers local`` manages the two local models."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from avengers import ArtifactError, Router
from avengers.cli import app
from avengers.exceptions import ClusterCountWarning
from toy import toy_rows
from typer.testing import CliRunner

runner = CliRunner()


def _fitted(n_clusters: int) -> Router:
    rows = toy_rows()[:6]
    X = np.random.default_rng(0).normal(size=(len(rows), 8)).astype(np.float32)
    return Router(n_clusters=n_clusters, embedder="precomputed").fit(rows, embeddings=X)


def test_router_warns_when_k_exceeds_the_distinct_queries() -> None:
    with pytest.warns(ClusterCountWarning, match="only 6 distinct queries: fitted 6 clusters"):
        r = _fitted(64)
    assert len(r.cluster_centers_) == 6


def test_router_with_enough_queries_does_not_warn() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ClusterCountWarning)
        _fitted(3)


def test_push_to_hub_offline_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(ArtifactError) as e:
        _fitted(3).push_to_hub("owner/my-router")
    msg = str(e.value)
    assert "\n" not in msg and "HF_HUB_OFFLINE" in msg and "save_pretrained" in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_push_to_hub_unreachable_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as c

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(c, "ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ArtifactError) as e:
        _fitted(3).push_to_hub("owner/my-router", token="hf_fake")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("owner/my-router: ")


@pytest.fixture(scope="module")
def toy_router_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("first-run")
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in toy_rows()))
    r = runner.invoke(
        app, ["train", "-d", str(d / "train.jsonl"), "--k", "3", "-o", str(d / "router")]
    )
    assert r.exit_code == 0, r.output
    return d


def test_plots_without_train_data_say_which_plot_is_skipped(toy_router_dir: Path) -> None:
    d = toy_router_dir
    r = runner.invoke(
        app,
        ["evaluate", "-r", str(d / "router"), "-d", str(d / "train.jsonl"),
         "--plots", str(d / "plots")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "note: accuracy_vs_k.png skipped" in r.output and "--train-data" in r.output
    assert sorted(p.name for p in (d / "plots").glob("*.png")) == [
        "alpha_curve.png",
        "cluster_heatmap.png",
    ]


def test_alpha_labels_merge_points_that_coincide() -> None:
    from avengers.training.evaluation import Evaluation
    from avengers.training.plots import _alpha_labels

    def ev(alpha: float, acc: float) -> Evaluation:
        return Evaluation(
            n_queries=10, accuracy=acc, best_single_model="m", best_single=0.5, oracle=0.9,
            random=0.3, gain=0.0, gap_closed=0.0, cost=None, best_single_cost=None,
            per_model={}, routed_share={}, n_fallback=0, settings={"alpha": alpha},
        )  # fmt: skip

    results = [ev(0.0, 0.5), ev(0.1, 0.5), ev(0.2, 0.5), ev(0.5, 0.7), ev(1.0, 0.8)]
    labels = [label for label, _ in _alpha_labels(results, [1.0, 1.0, 1.0, 2.0, 3.0])]
    assert labels == ["0.0-0.2", "0.5", "1.0"]


def test_alpha_labels_never_cover_each_other_or_a_point(tmp_path: Path) -> None:
    """The crowded low-cost end of the dcrouter alpha curve (alphas 0.0-0.8 within a fifth of the
    cost axis, as the demo's plot has it): every label sits clear of the other labels, of every
    point and of the legend, inside the axes."""
    from avengers.training.evaluation import Evaluation
    from avengers.training.plots import _plt, place_alpha_labels
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    curve = [(0.100, 0.513), (0.101, 0.514), (0.102, 0.514), (0.107, 0.517), (0.127, 0.528),
             (0.140, 0.541), (0.152, 0.538), (0.158, 0.541), (0.176, 0.547), (0.422, 0.563),
             (0.771, 0.599)]  # fmt: skip

    def ev(alpha: float, c: float, acc: float) -> Evaluation:
        return Evaluation(
            n_queries=305, accuracy=acc, best_single_model="m", best_single=0.563, oracle=0.73,
            random=0.38, gain=0.0, gap_closed=0.0, cost=c, best_single_cost=0.9,
            per_model={}, routed_share={}, n_fallback=0, settings={"alpha": alpha},
        )  # fmt: skip

    results = [ev(i / 10, c, acc) for i, (c, acc) in enumerate(curve)]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    costs = [c for c, _ in curve]
    ax.plot(costs, [a for _, a in curve], "o-", label="routed")
    ax.scatter([0.9], [0.563], marker="s", label="best single")
    ax.legend(fontsize=8)
    fig.tight_layout()
    anns = place_alpha_labels(ax, results, costs)
    fig.savefig(tmp_path / "curve.png")
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(a, renderer) for a in anns]
    points = [Bbox.from_bounds(x - 3, y - 3, 6, 6) for x, y in ax.transData.transform(curve)]
    legend = ax.get_legend().get_window_extent(renderer)
    assert len(anns) >= 9  # 0.0-0.2 merged, every other alpha labelled
    for i, box in enumerate(boxes):
        assert not any(box.overlaps(other) for other in boxes[i + 1 :]), anns[i].get_text()
        assert not any(box.overlaps(p) for p in points), anns[i].get_text()
        assert not box.overlaps(legend) and ax.get_window_extent(renderer).contains(*box.p0)
    plt.close(fig)


def test_evaluation_gives_a_paired_interval_and_the_cost_headline_in_words() -> None:
    """The demo's first part prints its gain with a paired 95% interval, and the alpha curve's
    headline (the cheapest alpha as accurate as the best single model) in words."""
    import numpy as np
    from avengers import OutcomeData, Router
    from avengers.training.evaluation import cost_headline, evaluate, in_words, sweep_alpha

    rng = np.random.default_rng(0)
    n, dim = 120, 8
    topic = np.arange(n) % 2
    X = np.eye(dim, dtype=np.float32)[topic] + 0.01 * rng.standard_normal((n, dim)).astype(
        np.float32
    )
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    # the pricey model is right everywhere, the cheap one only on topic 1 (half the queries):
    # routing topic 1 to the cheap one is as accurate at (1 + 20) / 2 / 20 = 52.5 % of the cost
    scores = np.column_stack([topic, np.ones(n)]).astype(float)
    costs = np.tile([[1.0, 20.0]], (n, 1))
    data = OutcomeData([f"q{i}" for i in range(n)], ["cheap", "pricey"], scores, costs)
    router = Router(n_clusters=2, n_nearest=1, shrinkage=0.0, classifier_weight=0.0)
    router.fit(data, embeddings=X)
    ev = evaluate(router, data, embeddings=X)
    routed = scores[np.arange(n), router.estimate(X).best]
    diff = routed - scores[:, 1]
    half = 1.96 * diff.std(ddof=1) / np.sqrt(n)
    assert ev.gain_ci95 == pytest.approx((diff.mean() - half, diff.mean() + half))
    assert "(95% interval" in ev.table() and "paired over the 120 queries" in ev.table()
    line = cost_headline(sweep_alpha(router, data, test_embeddings=X))
    assert line is not None and line.startswith("at alpha ")
    assert "as accurate as the best single model (1.000 vs 1.000, pricey)" in line
    assert "about half of its average cost (10.5 vs 20 per query)" in line
    assert [in_words(x) for x in (0.48, 0.26, 0.34, 0.12)] == [
        "about half", "about a quarter", "about a third", "about a tenth",
    ]  # fmt: skip
    assert (in_words(0.03), in_words(0.97), in_words(1.4)) == ("3%", "97%", "140%")


def test_docs_cap_direct_calls_to_the_local_models_in_a_field_llama_cpp_reads() -> None:
    """``ChatOpenAI(max_tokens=...)`` sends ``max_completion_tokens``, which llama.cpp's server
    ignores: wherever the docs build a ``ChatOpenAI`` on a local model's port they cap it through
    ``extra_body``, and say why."""
    import re

    root = Path(__file__).resolve().parents[1]
    found = 0
    for doc in [*sorted((root / "docs").glob("*.md")), root / "README.md"]:
        text = doc.read_text()
        for call in re.findall(r"ChatOpenAI\((?:[^()]|\([^()]*\))*\)", text):
            if "127.0.0.1:808" in call:
                found += 1
                assert "max_tokens=" not in call and "extra_body" in call, (doc.name, call)
                assert "max_completion_tokens" in text, doc.name
    assert found >= 1


def test_demo_fills_the_reproduction_report_from_its_summary(tmp_path: Path) -> None:
    """``benchmarks/reproduce.py --demo-only`` (the end of scripts/demo.sh) rewrites only the
    demo's section of docs/reproduction.md, from the summary the demo wrote."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    assert "reproduce.py --demo-only --summary" in (root / "scripts" / "demo.sh").read_text()
    doc = tmp_path / "reproduction.md"
    original = (root / "docs" / "reproduction.md").read_text()
    doc.write_text(original)
    summary = {
        "samples": 3, "answer_samples": 5, "seconds": 612.0,
        "evaluation": {"n_queries": 43, "accuracy": 0.512, "best_single_model": "gemma3-270m",
                       "best_single": 0.488, "oracle": 0.651},
        "cross_validated": {"n_questions": 130, "repeats": 5, "folds": 5, "routed": 0.5,
                            "best_single": 0.47, "difference": 0.03, "ci95": [-0.02, 0.08]},
        "consensus_gold_correlation": 0.61,
        "answers": [{"question": "What is 3 times 9?", "gold": "27", "answer": "27",
                     "model": "smollm2-135m", "votes": {"27": 4, "12": 1}}],
    }  # fmt: skip
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    r = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "reproduce.py"), "--demo-only",
         "--summary", str(tmp_path / "summary.json"), "--out", str(doc)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    text = doc.read_text()
    assert "has not been run" not in text
    for shown in ("routed accuracy 0.512 vs best single (gemma3-270m) 0.488",
                  "difference +0.030 (95% interval -0.020 to +0.080", "r = 0.61",
                  "What is 3 times 9? gold '27', voted '27' by smollm2-135m", "10.2 minutes"):  # fmt: skip
        assert shown in text, shown
    head, _, rest = original.partition("### Real models (the end-to-end demo)")
    assert text.startswith(head) and text.endswith(rest[rest.index("\n## ") :])


# ------------------------------------------------------------------ avengers local


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AVENGERS_STATE", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "state"


def test_local_status_lists_stopped_models_and_exits_1(state: Path) -> None:
    from avengers.demo.local import LOCAL_PORTS, local_models

    if any(m.answers() for m in local_models()):
        pytest.skip("local models are running on this machine")
    r = runner.invoke(app, ["local", "status"])
    assert r.exit_code == 1
    for alias, port in LOCAL_PORTS.items():
        assert f"http://127.0.0.1:{port}/v1" in r.output and alias in r.output
    assert r.output.count("stopped") == 2
    r = runner.invoke(app, ["local", "stop"])
    assert r.exit_code == 0 and "no local models were running" in r.output


def test_local_endpoints_file_keeps_a_users_file(state: Path, tmp_path: Path) -> None:
    from avengers import load_endpoints
    from avengers.demo.local import write_local_endpoints

    mine = tmp_path / "endpoints.yaml"
    assert write_local_endpoints(mine)
    eps = load_endpoints(mine)
    assert eps["smollm2-135m"].base_url == "http://127.0.0.1:8081/v1"
    assert eps["gemma3-270m"].base_url == "http://127.0.0.1:8082/v1"
    assert write_local_endpoints(mine)  # ours: rewritten
    mine.write_text("endpoints: {}\n")
    assert not write_local_endpoints(mine)  # the user's: kept
    assert mine.read_text() == "endpoints: {}\n"


@pytest.mark.slow
def test_local_start_status_stop(state: Path, tmp_path: Path) -> None:
    from avengers.demo.local import local_models

    if any(m.answers() for m in local_models()):
        pytest.skip("local models are already running on this machine")
    r = runner.invoke(app, ["local", "start"])
    try:
        assert r.exit_code == 0, r.output
        assert (tmp_path / "endpoints.yaml").is_file()
        r = runner.invoke(app, ["local", "status"])
        assert r.exit_code == 0 and r.output.count("running (pid") == 2, r.output
        r = runner.invoke(app, ["local", "start"])
        assert r.exit_code == 0 and r.output.count("already running") == 2
    finally:
        r = runner.invoke(app, ["local", "stop"])
    assert r.exit_code == 0 and r.output.count("stopped (pid") == 2, r.output
    assert not any(m.answers() for m in local_models())


def test_skipped_tests_show_their_reason(tmp_path: Path) -> None:
    """Tests that need the research data skip with a reason that pytest prints (-rs): a copy of
    the project's pytest settings and conftest, in a folder with no research data beside it, runs
    a test that asks for the data and reports the skip and where the data was looked for."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    shutil.copy(root / "pyproject.toml", project / "pyproject.toml")
    for name in ("conftest.py", "toy.py"):
        shutil.copy(root / "tests" / name, project / "tests" / name)
    (project / "tests" / "test_needs_data.py").write_text(
        "def test_reads_the_data(data_dir):\n    assert data_dir.is_dir()\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    missing = tmp_path / "shared" / "data"
    assert "1 skipped" in out.stdout
    assert re.search(
        r"SKIPPED \[1\] .*research data folder not found at " + re.escape(str(missing)),
        out.stdout,
    ), out.stdout


# ------------------------------------------------- set-up progress during the llama.cpp compile

SETUP = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"


def _setup_step_function() -> str:
    """The ``step`` function of scripts/setup.sh, as bash source."""
    import re

    (fn,) = re.findall(r"^step\(\) \{\n.*?^\}\n", SETUP.read_text(), flags=re.S | re.M)
    return fn


def _run_step(tmp_path: Path, command: str) -> str:
    """Run ``step`` on a bash command with a 1-second heartbeat; its stderr."""
    import subprocess

    script = tmp_path / "step.sh"
    script.write_text("set -euo pipefail\n" + _setup_step_function() + f'step "build" {command}\n')
    r = subprocess.run(
        ["bash", str(script)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "AVENGERS_SETUP_HEARTBEAT": "1", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return r.stderr


@pytest.mark.skipif(
    not all(Path(f"/usr/bin/{t}").exists() for t in ("cmake", "ninja", "cc")),
    reason="needs cmake, ninja and a C compiler",
)
@pytest.mark.parametrize("verbose", [False, True])
def test_setup_shows_compile_progress_from_a_real_cmake_ninja_build(
    tmp_path: Path, verbose: bool
) -> None:
    """While a real CMake + Ninja build runs (the generator scikit-build-core uses for
    llama-cpp-python), its output indented as ``pip -v`` shows it, the heartbeat names the
    latest ``[n/N] Building C object ...`` line; in a verbose build (``cmake --build -v``, what
    scikit-build-core runs under ``pip -v``: whole compiler command lines) it shows
    ``[n/N] p% of the build, compiling FILE``."""
    src = tmp_path / "src"
    src.mkdir()
    names = [f"part{i}" for i in range(4)]
    for n in names:
        (src / f"{n}.c").write_text(f"int {n}(void) {{ return 1; }}\n")
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.10)\nproject(tiny C)\n"
        f"add_library(tiny STATIC {' '.join(n + '.c' for n in names)})\n"
    )
    slow = tmp_path / "slowcc"  # each compile takes a second, so the heartbeat fires mid-build
    slow.write_text('#!/bin/sh\nsleep 1\nexec "$@"\n')
    slow.chmod(0o755)
    build = (
        f"cmake -S {src} -B {tmp_path / 'build'} -G Ninja -DCMAKE_C_COMPILER_LAUNCHER={slow} "
        f"&& cmake --build {tmp_path / 'build'} -j1{' -v' if verbose else ''}"
    )
    err = _run_step(tmp_path, f"bash -c '({build}) 2>&1 | sed -u \"s/^/  /\"'")
    beats = [x for x in err.splitlines() if x.startswith("[setup]   build: ")]
    shown = r"\d+% of the build, compiling part\d\.c$" if verbose else r"Building C object"
    compiling = [x for x in beats if re.search(r"\| \[\d+/\d+\] " + shown, x)]
    assert compiling, err
    assert all(len(x.split("| ", 1)[1]) <= 100 for x in compiling)
    assert err.splitlines()[-1].startswith("[setup] build: done in ")


def test_setup_progress_pattern_matches_pip_and_make_lines(tmp_path: Path) -> None:
    """pip's own lines and Make's ``[ 42%]`` lines (a build without Ninja) are shown too; the
    last matching line wins."""
    log = tmp_path / "log.txt"
    log.write_text(
        "Using pip 24.0 from /x/pip (python 3.11)\n"
        "Collecting llama-cpp-python>=0.3\n"
        "  Downloading llama_cpp_python-0.3.16.tar.gz (50.7 MB)\n"
        "Building wheels for collected packages: llama-cpp-python\n"
        "  *** Configuring CMake...\n"
        "  [ 42%] Building CXX object vendor/llama.cpp/src/CMakeFiles/llama.dir/llama.cpp.o\n"
        "  cc1plus: note: some compiler chatter\n"
    )
    cmd = f"bash -c 'cat {log}; sleep 3'"
    err = _run_step(tmp_path, cmd)
    beats = [x for x in err.splitlines() if x.startswith("[setup]   build: ")]
    assert beats and all(
        x.endswith(
            "| [ 42%] Building CXX object vendor/llama.cpp/src/CMakeFiles/llama.dir/llama.cpp.o"
        )
        for x in beats
    ), err


def test_server_speed_rows_never_reuse_a_text() -> None:
    """benchmarks/server_speed.py measures what it says: no request text of one row (route only,
    routed, direct, paced, warm-up) appears in another, nor in another run, so the server's
    query and embedding caches never answer a measured routed request."""
    import importlib.util
    import json

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "server_speed.py"
    spec = importlib.util.spec_from_file_location("server_speed", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    questions = ["What is 2 + 2?", "Name a prime.", "Sort a list in Python."]
    rows = bench.plan_rows(questions, ["a", "b"], ["MiniLM", "static"], n=50, paced=20, warmup=10)
    assert len(rows) == 15 and len(rows["MiniLM", "routed"]) == 50

    def texts(bodies: list[tuple[str, bytes]]) -> list[str]:
        return [json.loads(b)["messages"][-1]["content"] for _, b in bodies]

    seen: dict[str, tuple[str, str]] = {}
    for key, bodies in rows.items():
        for t in texts(bodies):
            assert t not in seen, (t, key, seen.get(t))
            seen[t] = key
    again = bench.plan_rows(questions, ["a", "b"], ["MiniLM"], n=50, paced=20, warmup=10)
    assert not set(texts(again["MiniLM", "routed"])) & set(seen)


def test_readme_times_give_the_load_they_were_measured_at() -> None:
    """Every time the README states (set-up, demo, tests, the collection) says at which load
    average it was measured: on a shared machine a time without its load misleads."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("### Time") : text.index("### After set-up")]
    bullets = section.split("\n- ")[1:]
    assert len(bullets) >= 3  # set-up, demo, tests, and any further run recorded
    for b in bullets:
        timed = re.findall(r"\d+(?:\.\d+)? (?:minutes|s)\b", b)
        assert timed and re.search(r"load(?: average)? \d", b), b
    collect = text[text.index("260 model calls") :].split("```")[0]
    assert re.search(r"\d+ s on a fresh\s+clone at load average \d", collect), collect
    assert re.search(r"at load \d+–\d+", collect), collect
