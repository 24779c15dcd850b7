"""The store guard's bookkeeping under a long outage: bounded memory, a log that does not flood.

A real SQLite file, write-locked by a second connection, stands in for a store that is down: every
guarded write fails with the driver's own ``database is locked`` until the lock is released."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from avengers.stores.guard import MAX_CHANGES_KEPT, StoreGuard, StoreUnavailable


def _locked_db(path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    writer = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    writer.execute("create table t (x)")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("begin exclusive")  # the lock another process would hold
    return writer, holder


def test_a_long_outage_logs_its_first_failure_then_one_summary_per_interval(
    tmp_path: Path, caplog: Any
) -> None:
    writer, holder = _locked_db(tmp_path / "s.db")
    guard = StoreGuard("feedback", timeout=5, log_interval=3600)
    caplog.set_level(logging.WARNING, logger="avengers.store")
    try:
        for _ in range(50):
            with pytest.raises(StoreUnavailable):
                guard.call_sync(writer.execute, "insert into t values (1)")
        lines = [r.getMessage() for r in caplog.records if r.name == "avengers.store"]
        # the first failure at once, with the driver's own words; the other 49 not yet
        assert lines == ["feedback store unavailable (error: OperationalError: database is locked)"]
        assert guard.failures["error"] == 50 and guard.state == "degraded"

        guard.log_interval = 0  # the interval has passed: the next failure's line counts the rest
        with pytest.raises(StoreUnavailable):
            guard.call_sync(writer.execute, "insert into t values (1)")
        assert caplog.records[-1].getMessage().endswith("; 49 more failed calls not logged)")

        holder.execute("rollback")  # the store is back
        guard.call_sync(writer.execute, "insert into t values (1)")
        assert caplog.records[-1].getMessage() == (
            "feedback store available again (51 failed calls while unavailable)"
        )
        assert guard.state == "ok" and guard.snapshot()["state_changes"] == 2
    finally:
        guard.close()
        writer.close()
        holder.close()


def test_a_flapping_store_keeps_a_bounded_history_and_an_exact_count(tmp_path: Path) -> None:
    writer, holder = _locked_db(tmp_path / "s.db")
    holder.execute("rollback")
    guard = StoreGuard("feedback", timeout=5)
    try:
        for _ in range(MAX_CHANGES_KEPT + 20):  # down, up, down, up, ...
            holder.execute("begin exclusive")
            with pytest.raises(StoreUnavailable):
                guard.call_sync(writer.execute, "insert into t values (1)")
            holder.execute("rollback")
            guard.call_sync(writer.execute, "insert into t values (1)")
        n = 2 * (MAX_CHANGES_KEPT + 20)
        assert guard.snapshot()["state_changes"] == n
        assert f'avengers_store_state_changes_total{{store="feedback"}} {n}' in guard.prometheus()
        assert len(guard.changes) == MAX_CHANGES_KEPT and guard.changes[-1][1] == "ok"
    finally:
        guard.close()
        writer.close()
        holder.close()
