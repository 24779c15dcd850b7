"""The flat import paths of the modules that moved into subpackages keep working (docs and users'
code written against them), as the very module objects at the new paths."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys

import avengers
import pytest
from avengers._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_module_at_its_new_path(old: str) -> None:
    assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_names_from_old_paths_are_the_same_objects() -> None:
    from avengers.answering.voting import extract_number
    from avengers.feedback import SQLiteFeedbackStore as OldStore
    from avengers.stores.feedback import SQLiteFeedbackStore
    from avengers.voting import extract_number as old_extract

    assert old_extract is extract_number and OldStore is SQLiteFeedbackStore
    # ``from avengers import feedback`` (a submodule by name) resolves through the same finder
    from avengers import feedback

    assert feedback is sys.modules["avengers.stores.feedback"]


def test_classes_pickle_under_their_new_path() -> None:
    from avengers.decision import ModelScore

    score = ModelScore(model="m", score=0.5, performance=0.4, cost=1e-6, evidence=3.0)
    assert pickle.loads(pickle.dumps(score)) == score
    from avengers.answering.config import SamplingConfig

    assert SamplingConfig.__module__ == "avengers.answering.config"


def test_an_old_path_works_in_a_fresh_interpreter_without_importing_the_rest() -> None:
    # the finder is installed by ``import avengers`` and imports nothing until a path is asked for
    code = (
        "import sys, avengers; before = set(sys.modules);"
        "import avengers.deadline as d;"
        "assert d.__name__ == 'avengers.transport.deadline', d.__name__;"
        "print(sorted(m for m in set(sys.modules) - before if m.startswith('avengers')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['avengers.deadline']"  # the alias, and nothing else


def test_unknown_paths_are_still_errors() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("avengers.serve")  # the server's never-released alias is gone
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("avengers.no_such_module")
    assert avengers.Router.__module__ == "avengers.router"
