"""Issue 28's fleet test on real parts: three `avengers serve` processes behind a real haproxy
(deploy/haproxy.cfg) and one real redis-server, 64 clients for a bounded time, a new router
version rolled out and one replica killed mid-run (``benchmarks/fleet.py`` drives it)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import fleet

pytestmark = pytest.mark.slow


def test_three_replicas_behind_haproxy_learn_as_one(tmp_path: Path) -> None:
    import shutil

    from avengers import Router
    from avengers.stores.fleet import LogFollower
    from avengers.stores.snapshot import SEQ_KEY

    if shutil.which("redis-server") is None or fleet.haproxy_binary() is None:
        pytest.skip("redis-server or haproxy not installed (.ci/run installs both)")
    out = fleet.run_fleet(tmp_path, clients=64, seconds=20, restart=True)
    reqs = out["requests"]
    kill = out["events"]["kill"]
    assert len(reqs) > 200, f"too few requests to judge: {len(reqs)}"

    # zero failed requests apart from those in flight on the killed replica
    failed = [r for r in reqs if r.status != 200]
    not_in_flight = [r for r in failed if not (r.t0 <= kill <= r.t1 + 0.05)]
    assert not_in_flight == [], Counter((r.kind, r.status, r.error) for r in not_in_flight)
    assert len(failed) <= 64  # at most one per client

    # zero lost acknowledged ratings: every acknowledged sequence number is in the store's log
    logged = {r.seq for r in out["logged"]}
    acked = {seq for seq, _ in out["acked"]}
    assert len(acked) > 100 and acked <= logged

    # conversations stick across replicas: every turn of a conversation on one model (those
    # whose store call was refused as busy say so in the answer and are routed afresh)
    multi = {
        k: v for k, v in out["conversations"].items() if len(v) > 1 and k not in out["degraded"]
    }
    assert len(multi) > 20
    assert all(len(set(models)) == 1 for models in multi.values()), multi

    # the new version reached both survivors, and the killed replica, started again after the
    # run, loaded it from disk and caught up with the log from the sequence number it records:
    # all three equal one router (the version) updated with every later rating in log order
    states = out["states"]
    assert out["restarted"] and len(states) == 3
    last = max(logged)
    assert [(s["seq"], s["version"]) for s in states] == [(last, 2), (last, 2), (last, 1)]
    version = Router.from_pretrained(out["router_dir"])
    assert version.training_summary_.get(SEQ_KEY, 0) == out["version_seq"] > 0

    class Log:  # the store's log as it was read after the run
        def ratings(self, after: int = 0) -> list:
            return [r for r in out["logged"] if r.seq > after]

    LogFollower(Log(), version).catch_up()  # type: ignore[arg-type]
    for s in states:
        assert s["models"] == list(version.models_)
        # float sums in the same order: equal to the last bit (tolerance 1e-12 stated anyway)
        np.testing.assert_allclose(
            np.array(s["score_sums"]), version.score_sums_, rtol=0, atol=1e-12
        )
        np.testing.assert_array_equal(np.array(s["score_counts"]), version.score_counts_)

    # replicas agreed within about a second of each acknowledgement
    delays = np.array(out["delays"])
    assert len(delays) > 100 and float(np.percentile(delays, 50)) < 1.5
