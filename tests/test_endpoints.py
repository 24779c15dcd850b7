"""Endpoint config: files in three formats, validation errors, keys only from the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from avengers.exceptions import ConfigError
from avengers.transport.endpoints import Endpoint, load_endpoints

YAML = """
defaults:
  max_concurrency: 3
  timeout: 5
endpoints:
  small:
    base_url: http://127.0.0.1:8081/v1
    model: smollm2
  big:
    base_url: https://api.example.com/v1
    api_key_env: EXAMPLE_KEY
    input_price: 0.15
    output_price: 0.6
    max_concurrency: 8
"""

TOML = """
[defaults]
timeout = 5

[endpoints.small]
base_url = "http://127.0.0.1:8081/v1"
model = "smollm2"
"""


def test_yaml_toml_json_load_alike(tmp_path: Path) -> None:
    (tmp_path / "e.yaml").write_text(YAML)
    (tmp_path / "e.toml").write_text(TOML)
    (tmp_path / "e.json").write_text(
        json.dumps(
            {
                "endpoints": [
                    {
                        "name": "small",
                        "base_url": "http://127.0.0.1:8081/v1",
                        "model": "smollm2",
                        "timeout": 5,
                    }
                ]
            }
        )
    )
    y = load_endpoints(tmp_path / "e.yaml")
    assert set(y) == {"small", "big"}
    assert y["small"].max_concurrency == 3 and y["big"].max_concurrency == 8
    assert y["small"].model_id == "smollm2" and y["big"].model_id == "big"
    assert y["big"].cost(1_000_000, 1_000_000) == pytest.approx(0.75)
    for f in ("e.toml", "e.json"):
        e = load_endpoints(tmp_path / f)["small"]
        assert (e.base_url, e.model_id, e.timeout) == ("http://127.0.0.1:8081/v1", "smollm2", 5)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("endpoints: {}", "no endpoints defined"),
        ("endpoints:\n  a: {model: x}", "'a' needs a base_url"),
        ("endpoints:\n  a: {base_url: ftp://x}", "base_url must be an http"),
        ("endpoints:\n  a: {base_url: 'http://h/v1', max_concurrency: 0}", "max_concurrency"),
        ("endpoints:\n  a: {base_url: 'http://h/v1', timeout: -1}", "timeout must be a number"),
        ("endpoints:\n  a: {base_url: 'http://h/v1', temprature: 1}", "unknown settings"),
        ("endpoints:\n  a: {base_url: 'http://h/v1', api_key: sk-abc}", "keys are not accepted"),
        (
            "endpoints:\n  a: {base_url: 'http://h/v1', api_key_env: sk-abcdef1234567890}",
            "looks like a key itself",
        ),
        ("hosts: []", "unknown top-level keys"),
        ("endpoints: [1, 2", "not valid YAML"),
    ],
)
def test_bad_configs_get_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "e.yaml"
    f.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_endpoints(f)


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_endpoints(tmp_path / "nope.yaml")
    (tmp_path / "e.ini").write_text("x")
    with pytest.raises(ConfigError, match="unknown endpoint file type"):
        load_endpoints(tmp_path / "e.ini")


def test_keys_come_from_the_environment_and_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    e = Endpoint("big", "https://api.example.com/v1", api_key_env="EXAMPLE_KEY")
    monkeypatch.delenv("EXAMPLE_KEY", raising=False)
    with pytest.raises(ConfigError, match="EXAMPLE_KEY is not set"):
        e.api_key()
    monkeypatch.setenv("EXAMPLE_KEY", "sk-secret-value-123")
    assert e.api_key() == "sk-secret-value-123"
    assert "sk-secret" not in repr(e) and "sk-secret" not in json.dumps(e.to_dict())
    assert Endpoint("local", "http://127.0.0.1:1/v1").api_key() == "not-needed"


def test_python_objects_are_accepted() -> None:
    eps = [Endpoint("a", "http://127.0.0.1:1/v1"), Endpoint("b", "http://127.0.0.1:2/v1")]
    assert set(load_endpoints(eps)) == {"a", "b"}
    assert load_endpoints({"a": {"base_url": "http://h/v1"}})["a"].name == "a"
    with pytest.raises(ConfigError, match="duplicate"):
        load_endpoints([eps[0], eps[0]])
