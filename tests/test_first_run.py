"""What a new user runs into on a first run: every surprise is one clear line (issue 17), and
``avengers local`` manages the two local models."""

from __future__ import annotations

import json
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
    from avengers.evaluation import Evaluation
    from avengers.plots import _alpha_labels

    def ev(alpha: float, acc: float) -> Evaluation:
        return Evaluation(
            n_queries=10, accuracy=acc, best_single_model="m", best_single=0.5, oracle=0.9,
            random=0.3, gain=0.0, gap_closed=0.0, cost=None, best_single_cost=None,
            per_model={}, routed_share={}, n_fallback=0, settings={"alpha": alpha},
        )  # fmt: skip

    results = [ev(0.0, 0.5), ev(0.1, 0.5), ev(0.2, 0.5), ev(0.5, 0.7), ev(1.0, 0.8)]
    labels = [label for label, _ in _alpha_labels(results, [1.0, 1.0, 1.0, 2.0, 3.0])]
    assert labels == ["0.0-0.2", "0.5", "1.0"]


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


def test_skipped_tests_show_their_reason() -> None:
    """Tests that need the research data skip with a reason that pytest prints (-rs)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    opts = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "-rs" in opts["addopts"].split()
    assert (
        'pytest.skip(f"research data folder not found at {DATA_DIR}")'
        in (root / "tests" / "conftest.py").read_text()
    )
