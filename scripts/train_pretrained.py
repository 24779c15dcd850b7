"""Rebuild the router shipped in the package (shared/avengers/pretrained/dcrouter-minilm) from the
bundled MIT-licensed dcrouter train split. Deterministic (seeded)."""

from __future__ import annotations

import sys
from pathlib import Path

from avengers import Router
from avengers.training.bundled import PRETRAINED_NAME, load_bundled

SETTINGS = dict(n_clusters=64, n_nearest=5, shrinkage=10.0, random_state=0)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    out = root / "shared" / "avengers" / "pretrained" / PRETRAINED_NAME
    train = load_bundled("train")
    router = Router(**SETTINGS).fit(train, show_progress=sys.stderr.isatty())
    router.save_pretrained(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
