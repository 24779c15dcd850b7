from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from avengers import ArtifactError, EmbedderMismatchError, Router
from avengers.artifact import CONFIG_FILE, WEIGHTS_FILE
from avengers.embedding.embedders import SentenceTransformerEmbedder

QUERIES = [
    "What is 13 times 7?",
    "How do I make risotto creamy?",
    "Write a Python function that checks for palindromes.",
    "Is it safe to eat raw cookie dough?",
]


def test_round_trip_gives_identical_decisions(toy_router: Router, tmp_path: Path, embedder) -> None:
    toy_router.save_pretrained(tmp_path / "r")
    files = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert files == ["README.md", CONFIG_FILE, WEIGHTS_FILE]
    loaded = Router.from_pretrained(tmp_path / "r", embedder=embedder)
    assert loaded.route_batch(QUERIES) == toy_router.route_batch(QUERIES)
    np.testing.assert_array_equal(loaded.cluster_centers_, toy_router.cluster_centers_)
    cfg = json.loads((tmp_path / "r" / CONFIG_FILE).read_text())
    assert cfg["format_version"] == 1
    assert cfg["models"] == toy_router.models_
    assert cfg["params"]["n_clusters"] == 3 and cfg["params"]["alpha"] == 1.0
    assert cfg["embedder"] == {"name": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384}
    card = (tmp_path / "r" / "README.md").read_text()
    assert "| cluster | size | top model |" in card and "math-model" in card


def test_knn_router_round_trip(embedder, tmp_path: Path) -> None:
    from toy import toy_rows

    r = Router(n_clusters=3, scoring="hybrid", n_neighbors=4, embedder=embedder).fit(toy_rows())
    r.save_pretrained(tmp_path)
    loaded = Router.from_pretrained(tmp_path, embedder=embedder)
    assert [d.models for d in loaded.route_batch(QUERIES)] == [
        d.models for d in r.route_batch(QUERIES)
    ]


def test_loading_never_uses_pickle(toy_router: Router, tmp_path: Path) -> None:
    toy_router.save_pretrained(tmp_path)
    code = (
        "import pickle, sys\n"
        "def boom(*a, **k): raise SystemExit('pickle used')\n"
        "pickle.load = pickle.loads = boom\n"
        "from avengers import Router\n"
        f"r = Router.from_pretrained({str(tmp_path)!r})\n"
        "print(r.models_)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "math-model" in out.stdout


def _hub_cache(src: Path, cache: Path, repo_id: str) -> str:
    """Lay out ``src`` as the Hugging Face hub cache does: blobs, snapshots, refs."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in src.iterdir():
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copy(f, repo / "blobs" / digest)
        (snap / f.name).symlink_to(Path("..") / ".." / "blobs" / digest)
    return commit


def test_from_pretrained_hub_id_offline(
    toy_router: Router, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder
) -> None:
    toy_router.save_pretrained(tmp_path / "src")
    cache = tmp_path / "hub"
    _hub_cache(tmp_path / "src", cache, "acme/toy-router")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    loaded = Router.from_pretrained("acme/toy-router", embedder=embedder)
    assert loaded.route_batch(QUERIES) == toy_router.route_batch(QUERIES)
    # explicit cache_dir works as well
    loaded2 = Router.from_pretrained("acme/toy-router", cache_dir=cache, embedder=embedder)
    assert loaded2.models_ == toy_router.models_
    with pytest.raises(ArtifactError, match="not in the local hub cache"):
        Router.from_pretrained("acme/absent-router", cache_dir=cache)


def test_missing_and_corrupted_artifacts(toy_router: Router, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such router folder"):
        Router.from_pretrained(tmp_path / "nowhere")
    d = toy_router.save_pretrained(tmp_path / "r")
    (d / WEIGHTS_FILE).write_bytes((d / WEIGHTS_FILE).read_bytes()[:100])  # truncated
    with pytest.raises(ArtifactError, match="corrupted or truncated weights"):
        Router.from_pretrained(d)
    d = toy_router.save_pretrained(tmp_path / "r2")
    (d / CONFIG_FILE).write_text('{"format": "avengers-router", "format_vers')
    with pytest.raises(ArtifactError, match="corrupted config"):
        Router.from_pretrained(d)
    d = toy_router.save_pretrained(tmp_path / "r3")
    (d / WEIGHTS_FILE).unlink()
    with pytest.raises(ArtifactError, match=r"missing router.safetensors"):
        Router.from_pretrained(d)
    d = toy_router.save_pretrained(tmp_path / "r4")
    (d / CONFIG_FILE).write_text(json.dumps({"hello": "world"}))
    with pytest.raises(ArtifactError, match="not an avengers router config"):
        Router.from_pretrained(d)


def test_future_version_and_shape_mismatch(toy_router: Router, tmp_path: Path) -> None:
    d = toy_router.save_pretrained(tmp_path / "r")
    cfg = json.loads((d / CONFIG_FILE).read_text())
    cfg["format_version"] = 99
    (d / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="format version 99 is newer"):
        Router.from_pretrained(d)
    cfg["format_version"] = 1
    cfg["models"] = cfg["models"][:2]  # config no longer matches the arrays
    (d / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match=r"expected .* \(corrupted artifact\?\)"):
        Router.from_pretrained(d)


class _Small:
    name = "tiny"
    dimension = 8

    def embed(self, texts):  # pragma: no cover - never called
        return np.zeros((len(texts), 8), dtype=np.float32)


def test_embedder_dimension_mismatch_is_refused(toy_router: Router, tmp_path: Path) -> None:
    d = toy_router.save_pretrained(tmp_path)
    with pytest.raises(EmbedderMismatchError, match=r"gives 8-d vectors .* \(384-d\)"):
        Router.from_pretrained(d, embedder=_Small())


def test_default_embedder_is_recorded_and_restored(toy_router: Router, tmp_path: Path) -> None:
    d = toy_router.save_pretrained(tmp_path)
    loaded = Router.from_pretrained(d)
    emb = loaded.get_embedder()
    assert emb.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert isinstance(getattr(emb, "inner", emb), SentenceTransformerEmbedder)


def test_shipped_router_loads_and_saves_the_same_layout(tmp_path: Path, embedder) -> None:
    from avengers import __version__
    from avengers.training.bundled import load_pretrained, pretrained_path

    shipped = load_pretrained(embedder=embedder)
    assert shipped.route("What is 17 * 23?").model in shipped.models_
    on_disk = json.loads((pretrained_path() / CONFIG_FILE).read_text())
    shipped.save_pretrained(tmp_path)
    again = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert again["library_version"] == __version__
    # the same keys in the same order, and the same content apart from the library version
    assert list(again) == list(on_disk)
    assert {**again, "library_version": None} == {**on_disk, "library_version": None}
    from safetensors.numpy import load_file

    before, after = (
        load_file(str(pretrained_path() / WEIGHTS_FILE)),
        load_file(str(tmp_path / WEIGHTS_FILE)),
    )
    assert sorted(before) == sorted(after)
    for name in before:
        assert after[name].dtype == before[name].dtype
        np.testing.assert_array_equal(after[name], before[name])
