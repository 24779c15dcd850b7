"""Request and routing counters, rendered in the Prometheus text format for ``/metrics``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from ..answering.results import AnswerResult, Failure


class Metrics:
    """Counters in the Prometheus text format (one process)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.buckets = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
        self.bucket_counts = [0] * len(self.buckets)
        self.routed: dict[str, int] = defaultdict(int)
        self.fallbacks = 0
        self.samples_drawn = 0
        self.samples_saved = 0
        self.upstream_failures: dict[tuple[str, str], int] = defaultdict(int)
        self.in_flight = 0
        self.deadlines = 0
        self.disconnects = 0
        self.cost: dict[str, float] = defaultdict(float)
        """Per profile: the summed cost of answers whose cost is known (endpoint prices)."""
        self.costed: dict[str, int] = defaultdict(int)
        """Per profile: answers whose cost is known."""
        self.uncosted: dict[str, int] = defaultdict(int)
        """Per profile: answers whose cost is unknown (an endpoint without prices)."""
        self.expected_cost: dict[str, float] = defaultdict(float)
        """Per profile: the router's expected cost of the samples drawn, where it knows costs."""
        self.sticky = 0

    def observe(self, path: str, status: int, seconds: float) -> None:
        """Count one finished HTTP request and its latency."""
        self.requests[(path, status)] += 1
        self.latency_sum += seconds
        self.latency_count += 1
        for i, b in enumerate(self.buckets):
            if seconds <= b:
                self.bucket_counts[i] += 1

    def record(self, res: AnswerResult, profile: str = "avengers") -> None:
        """Count one answer: who gave it, fallbacks, samples, its cost (under the ``profile``
        that asked for it; an unknown cost is counted as unknown, never as zero), and upstream
        failures on the way."""
        self.routed[res.model] += 1
        if res.cost is None:
            self.uncosted[profile] += 1
        else:
            self.cost[profile] += res.cost
            self.costed[profile] += 1
        if res.expected_cost is not None:
            self.expected_cost[profile] += res.expected_cost
        self.sticky += bool(res.decision is not None and res.decision.sticky)
        self.fallbacks += res.fallback is not None
        self.samples_drawn += res.n_drawn
        self.samples_saved += res.samples_saved
        self.record_failures(res.failures)

    def record_failures(self, failures: Iterable[Failure]) -> None:
        """Count failed upstream calls by model and kind."""
        for f in failures:
            self.upstream_failures[(f.model, f.kind)] += f.count

    def render(self, circuits: dict[str, dict[str, Any]] | None = None) -> str:
        """Everything counted so far, and the state of each model's circuit breaker, in the
        Prometheus text exposition format."""

        def esc(v: str) -> str:
            return v.replace("\\", "\\\\").replace('"', '\\"')

        lines = [
            "# HELP avengers_requests_total HTTP requests by path and status.",
            "# TYPE avengers_requests_total counter",
        ]
        for (path, status), n in sorted(self.requests.items()):
            lines.append(f'avengers_requests_total{{path="{esc(path)}",status="{status}"}} {n}')
        lines += [
            "# HELP avengers_request_seconds Request latency.",
            "# TYPE avengers_request_seconds histogram",
        ]
        for b, n in zip(self.buckets, self.bucket_counts, strict=True):
            lines.append(f'avengers_request_seconds_bucket{{le="{b}"}} {n}')
        lines += [
            f'avengers_request_seconds_bucket{{le="+Inf"}} {self.latency_count}',
            f"avengers_request_seconds_sum {self.latency_sum:.6f}",
            f"avengers_request_seconds_count {self.latency_count}",
            "# HELP avengers_routed_total Answers by the model that gave them.",
            "# TYPE avengers_routed_total counter",
        ]
        for m, n in sorted(self.routed.items()):
            lines.append(f'avengers_routed_total{{model="{esc(m)}"}} {n}')
        lines += [
            "# TYPE avengers_fallbacks_total counter",
            f"avengers_fallbacks_total {self.fallbacks}",
            "# TYPE avengers_samples_drawn_total counter",
            f"avengers_samples_drawn_total {self.samples_drawn}",
            "# TYPE avengers_samples_saved_total counter",
            f"avengers_samples_saved_total {self.samples_saved}",
            "# TYPE avengers_upstream_failures_total counter",
        ]
        for (m, k), n in sorted(self.upstream_failures.items()):
            lines.append(f'avengers_upstream_failures_total{{model="{esc(m)}",kind="{k}"}} {n}')
        per_profile = (
            ("avengers_cost_total", "Cost of the answers whose cost is known (endpoint prices, "
             "USD), by profile.", self.cost, ".10g"),
            ("avengers_costed_answers_total", "Answers whose cost is known, by profile.",
             self.costed, ""),
            ("avengers_cost_unknown_total", "Answers whose cost is unknown (an endpoint without "
             "prices), by profile.", self.uncosted, ""),
            ("avengers_expected_cost_total", "The router's expected cost of the samples drawn "
             "(outcome-data unit), by profile.", self.expected_cost, ".10g"),
        )  # fmt: skip
        for name, help_text, values, spec in per_profile:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            for p, v in sorted(values.items()):
                lines.append(f'{name}{{profile="{esc(p)}"}} {v:{spec}}')
        lines += [
            "# HELP avengers_sticky_total Answers that kept their conversation's model.",
            "# TYPE avengers_sticky_total counter",
            f"avengers_sticky_total {self.sticky}",
        ]
        lines += ["# TYPE avengers_in_flight gauge", f"avengers_in_flight {self.in_flight}"]
        lines += [
            "# HELP avengers_deadline_exceeded_total Requests cut off by the request deadline.",
            "# TYPE avengers_deadline_exceeded_total counter",
            f"avengers_deadline_exceeded_total {self.deadlines}",
            "# HELP avengers_client_disconnects_total Requests abandoned by their client.",
            "# TYPE avengers_client_disconnects_total counter",
            f"avengers_client_disconnects_total {self.disconnects}",
        ]
        if circuits:
            lines += [
                "# HELP avengers_circuit_state Circuit breaker: 0 closed, 1 half-open, 2 open.",
                "# TYPE avengers_circuit_state gauge",
            ]
            code = {"closed": 0, "half_open": 1, "open": 2}
            for m, c in circuits.items():
                lines.append(f'avengers_circuit_state{{model="{esc(m)}"}} {code[c["state"]]}')
            lines.append("# TYPE avengers_circuit_opened_total counter")
            for m, c in circuits.items():
                lines.append(f'avengers_circuit_opened_total{{model="{esc(m)}"}} {c["opened"]}')
        return "\n".join(lines) + "\n"
