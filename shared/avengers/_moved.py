"""Import paths of modules that moved into subpackages, kept working.

The core's modules were grouped into subpackages (``embedding``, ``transport``, ``answering``,
``training``, ``stores``, ``routing``) so the folders show the layers. Code written against the
old flat paths keeps working: ``import avengers.voting`` or ``from avengers.feedback import
SQLiteFeedbackStore`` gives the very module object that lives at the new path (same classes, same
functions, so ``isinstance`` checks and pickles agree). Nothing is imported until such a path is
asked for. New code should use the new paths (see ``docs/architecture.md``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

MOVED: dict[str, str] = {
    f"avengers.{old}": f"avengers.{new}"
    for old, new in {
        "embed_base": "embedding.base",
        "static": "embedding.static",
        "embedders": "embedding.embedders",
        "embed_column": "embedding.column",
        "endpoints": "transport.endpoints",
        "retry": "transport.retry",
        "capabilities": "transport.capabilities",
        "upstream": "transport.upstream",
        "openai_params": "transport.openai_params",
        "backends": "transport.backends",
        "breaker": "transport.breaker",
        "deadline": "transport.deadline",
        "messages": "answering.messages",
        "voting": "answering.voting",
        "toolcalls": "answering.toolcalls",
        "answer_config": "answering.config",
        "tally": "answering.tally",
        "sampler": "answering.sampler",
        "results": "answering.results",
        "answer": "answering.answer",
        "data": "training.data",
        "datasets": "training.datasets",
        "collect": "training.collect",
        "evaluation": "training.evaluation",
        "calibration": "training.calibration",
        "chunked_training": "training.chunked",
        "bundled": "training.bundled",
        "plots": "training.plots",
        "clustering": "routing.clustering",
        "scoring": "routing.scoring",
        "classifier": "routing.logistic",
        "storeguard": "stores.guard",
        "feedback": "stores.feedback",
        "snapshot": "stores.snapshot",
        "conversations": "stores.conversations",
        "fleet": "stores.fleet",
    }.items()
}
"""Old import path -> the path the module lives at now."""


class _SameModule(importlib.abc.Loader):
    """Loads an old path as the module at its new path (one module object under two names)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was executed under its new path."""


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds the old import paths of :data:`MOVED` (and of modules below them)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _SameModule(new))


def install() -> None:
    """Put the finder first on ``sys.meta_path``, once (``avengers/data`` is also a folder of
    package data, which the path finder would take for a namespace package)."""
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())  # before the path finder: `data` is also a folder
