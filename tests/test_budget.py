"""Budgets: calibrating alpha to a cost or traffic-share target, and per-request cost caps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from avengers import OutcomeData, Router
from avengers.training.calibration import calibrate, fold_indices


def two_topic_data(n: int = 80, dim: int = 384) -> tuple[OutcomeData, np.ndarray]:
    """Two well-separated topics. On topic A only the pricey model is right; on topic B both are.
    So routing by quality costs 0.5 * 10 + 0.5 * 1 = 5.5 per query at accuracy 1, and the cheap
    model alone costs 1 at accuracy 0.5."""
    rng = np.random.default_rng(0)
    centres = np.zeros((2, dim), np.float32)
    centres[0, 0] = centres[1, 1] = 1.0
    topic = np.arange(n) % 2
    X = centres[topic] + 0.01 * rng.standard_normal((n, dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    scores = np.where(topic[:, None] == 0, [[0.0, 1.0]], [[1.0, 1.0]])
    costs = np.tile([[1.0, 10.0]], (n, 1))
    data = OutcomeData([f"q{i}" for i in range(n)], ["cheap", "pricey"], scores, costs)
    return data, X


@pytest.fixture()
def router(embedder) -> Router:
    # the pure cluster estimate, so that the expected costs and accuracies above are exact
    # (the default hybrid's classifiers nudge the tie on topic B toward the pricey model)
    return Router(
        n_clusters=2, n_nearest=1, shrinkage=0.0, classifier_weight=0.0, embedder=embedder
    )


def test_folds_cover_every_query_once() -> None:
    held = np.concatenate([t for _, t in fold_indices(23, 5)])
    assert sorted(held.tolist()) == list(range(23))


def test_generous_target_keeps_quality(router: Router) -> None:
    data, X = two_topic_data()
    res = router.calibrate(data, target_cost=6.0, embeddings=X)
    assert res.feasible
    assert res.expected_cost == pytest.approx(5.5)
    assert res.expected_accuracy == pytest.approx(1.0)
    assert router.alpha == res.alpha
    assert router.is_fitted()


def test_tight_target_sends_everything_to_the_cheap_model(router: Router) -> None:
    data, X = two_topic_data()
    res = router.calibrate(data, target_cost=2.0, embeddings=X)
    assert res.feasible
    assert res.expected_cost == pytest.approx(1.0)
    assert res.expected_accuracy == pytest.approx(0.5)
    assert res.accuracy_se > 0
    # the chosen alpha really routes everything to the cheap model
    assert {router.models_[i] for i in router.estimate(X).best} == {"cheap"}
    assert "*" in res.table()


def test_share_target(router: Router) -> None:
    data, X = two_topic_data()
    res = calibrate(router, data, target_share=(["pricey"], 0.6), embeddings=X)
    assert res.feasible and res.expected_share == pytest.approx(0.5)
    assert res.expected_accuracy == pytest.approx(1.0)
    res = calibrate(router, data, target_share=(["pricey"], 0.1), embeddings=X)
    assert res.expected_share == pytest.approx(0.0)


def test_unreachable_target_warns_and_picks_the_cheapest(router: Router) -> None:
    data, X = two_topic_data()
    with pytest.warns(UserWarning, match="no alpha .* meets cost <= 0.5"):
        res = router.calibrate(data, target_cost=0.5, embeddings=X)
    assert not res.feasible
    assert res.expected_cost == pytest.approx(1.0)


def test_reachable_target_does_not_warn(router: Router) -> None:
    data, X = two_topic_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        router.calibrate(data, target_cost=100.0, embeddings=X)


def test_calibrate_shows_progress_when_asked(router: Router, capsys) -> None:
    """A long calibration (82 s on dcrouter) is never silent when asked to show progress: a bar
    over each fold's fit and alphas; without ``show_progress`` nothing is printed."""
    data, X = two_topic_data()
    router.calibrate(data, target_cost=6.0, embeddings=X, folds=3)
    assert capsys.readouterr().err == ""
    router.calibrate(data, target_cost=6.0, embeddings=X, folds=3, show_progress=True)
    err = capsys.readouterr().err
    assert "calibrating alpha (3 folds)" in err and "66/66" in err  # 3 x (1 fit + 21 alphas)


def test_calibrated_alpha_is_saved(router: Router, tmp_path) -> None:
    data, X = two_topic_data()
    res = router.calibrate(data, target_cost=2.0, embeddings=X)
    router.save_pretrained(tmp_path / "r")
    again = Router.from_pretrained(tmp_path / "r", embedder=router.get_embedder())
    assert again.alpha == res.alpha


def test_bad_targets(router: Router) -> None:
    from avengers import ConfigError

    data, X = two_topic_data()
    with pytest.raises(ConfigError):
        router.calibrate(data, embeddings=X)
    with pytest.raises(ConfigError):
        router.calibrate(data, target_cost=1.0, target_share=(["cheap"], 0.5), embeddings=X)
    with pytest.raises(ConfigError, match="unknown models"):
        router.calibrate(data, target_share=(["nope"], 0.5), embeddings=X)


def test_cli_calibrate(tmp_path, embedder) -> None:
    import json

    from avengers.cli import app
    from toy import toy_rows
    from typer.testing import CliRunner

    runner = CliRunner()
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in toy_rows()) + "\n")
    r = runner.invoke(
        app, ["train", "-d", str(tmp_path / "train.jsonl"), "--k", "3", "-o", str(tmp_path / "r")]
    )
    assert r.exit_code == 0, r.output
    args = ["calibrate", "-r", str(tmp_path / "r"), "-d", str(tmp_path / "train.jsonl")]
    r = runner.invoke(app, [*args, "--target-cost", "0.6", "--out", str(tmp_path / "r2"), "--json"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["feasible"] and payload["expected_cost"] <= 0.6
    saved = json.loads((tmp_path / "r2" / "config.json").read_text())
    assert json.dumps(payload["alpha"]) in json.dumps(saved)
    assert Router.from_pretrained(tmp_path / "r2").alpha == payload["alpha"]

    r = runner.invoke(app, [*args, "--target-cost", "0.1", "--out", str(tmp_path / "r3")])
    assert r.exit_code == 0, r.output
    assert "no alpha" in r.output and "NOT met" in r.output

    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "exactly one" in r.output


# ------------------------------------------------------------------ per-request cost cap
# The toy router's expected cost per call: math-model 1.0, chef-model 0.5, code-model 2.0.

MATH_Q = "What is 17 times 23?"


def test_fit_budget_filters_reduces_and_fails() -> None:
    from avengers.answering.answer import fit_budget
    from avengers.answering.config import SamplingConfig
    from avengers.exceptions import BudgetError, ConfigError

    costs: dict[str, float | None] = {"a": 1.0, "b": 2.0, "c": 0.5}
    cfg = SamplingConfig(n_samples=10, max_cost=5.0)
    order, out, notes = fit_budget(["a", "b", "c"], costs, cfg)
    assert order == ["c"] and out is cfg and "left out a, b" in notes[0]
    order, out, notes = fit_budget(["a", "b", "c"], costs, cfg.updated(max_cost=4.0))
    assert order == ["a", "c"] and out.n_samples == 4 and "'a' samples 4" in notes[0]
    assert fit_budget(["a"], costs, SamplingConfig())[2] == []  # no cap, no change
    with pytest.raises(BudgetError, match="cheapest, 'c'") as e:
        fit_budget(["a", "b", "c"], costs, cfg.updated(max_cost=0.1))
    assert isinstance(e.value, ConfigError)
    with pytest.raises(BudgetError, match="knows none"):
        fit_budget(["a"], {"a": None}, cfg)
    with pytest.raises(ConfigError, match="max_cost"):
        SamplingConfig(max_cost=-1)


@pytest.fixture
def upstreams():
    from fake_openai_server import FakeModel, FakeOpenAIServer

    a = FakeOpenAIServer({"math": FakeModel(answers=["391", "The answer is 391.", "381"])}).start()
    b = FakeOpenAIServer(
        {"chef": FakeModel(answers=["Boil it."]), "coder": FakeModel(answers=["391"])}
    ).start()
    yield a, b
    a.stop()
    b.stop()


async def test_answerer_respects_max_cost(toy_router: Router, upstreams) -> None:
    from avengers.answering.answer import Answerer
    from avengers.exceptions import BudgetError
    from test_serve import make_endpoints

    a = Answerer(toy_router, make_endpoints(*upstreams), adaptive=False)
    res = await a.aanswer(MATH_Q, max_cost=20.0)  # math-model x 10 = 10 fits
    assert res.model == "math-model" and res.n_requested == 10
    res = await a.aanswer(MATH_Q, max_cost=5.0)  # only chef-model x 10 = 5 fits
    assert res.model == "chef-model" and res.n_drawn == 10
    assert any("left out" in n for n in res.notes)
    res = await a.aanswer(MATH_Q, max_cost=4.99)  # nothing fits x 10: math-model x 4
    assert res.model == "math-model" and res.n_requested == 4
    assert any("'math-model' samples 4" in n for n in res.notes)
    with pytest.raises(BudgetError, match="no candidate model fits max_cost"):
        await a.aanswer(MATH_Q, max_cost=0.1)


def test_server_max_cost(toy_router: Router, upstreams) -> None:
    import openai
    from avengers.answering.answer import Answerer
    from avengers.server import create_app
    from test_serve import Running, client, make_endpoints

    r = Running(create_app(Answerer(toy_router, make_endpoints(*upstreams), adaptive=False)))
    try:
        msgs = [{"role": "user", "content": MATH_Q}]
        resp = client(r).chat.completions.create(
            model="avengers", messages=msgs, extra_body={"max_cost": 4.99}
        )
        account = (resp.model_extra or {})["avengers"]
        assert resp.model == "math-model" and account["n_requested"] == 4
        with pytest.raises(openai.BadRequestError, match="no candidate model fits"):
            client(r).chat.completions.create(
                model="avengers", messages=msgs, extra_body={"max_cost": 0.1}
            )
        with pytest.raises(openai.BadRequestError, match="max_cost"):
            client(r).chat.completions.create(
                model="avengers", messages=msgs, extra_body={"max_cost": -1}
            )
    finally:
        r.stop()
