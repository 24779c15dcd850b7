"""Local model servers: a server that starts but dies on its first real request is reported in
one clear line (the failure a llama.cpp build for the wrong CPU produces), not discovered later
as hundreds of connection errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from avengers.demo.local import LlamaCppServer, describe_exit, free_port, port_taken
from avengers.exceptions import ConfigError
from waiting import answers, wait_until

# Answers GET /v1/models, and kills itself with SIGSEGV on the first POST, like a bad build.
CRASHING_SERVER = textwrap.dedent(
    """
    import os, signal, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"object": "list", "data": []}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            os.kill(os.getpid(), signal.SIGSEGV)

        def log_message(self, *a):
            pass

    HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
    """
)


def test_describe_exit() -> None:
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert describe_exit(-200) == "killed by signal 200"


def test_a_port_is_taken_only_while_something_listens_on_it() -> None:
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    try:
        assert port_taken(port)
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = listener.accept()
        conn.close()  # the server side closes first: its end of the connection waits in TIME_WAIT
        client.close()
    finally:
        listener.close()
    # A server that just stopped leaves TIME_WAIT connections behind; a new server can bind there.
    assert not port_taken(port)


def test_a_server_that_dies_on_its_first_request_is_reported(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_SERVER, str(port)])
    try:
        srv = LlamaCppServer(tmp_path / "m.gguf", "bad-build", port=port)
        srv.process = proc
        wait_until(answers(f"{srv.base_url}/models"), 30, "the fake server answered", proc=proc)
        assert srv.exit_status() is None
        with pytest.raises(ConfigError) as err:
            srv._first_request()
        msg = str(err.value)
        assert "bad-build crashed on its first request (killed by SIGSEGV)" in msg
        assert "GGML_NATIVE=OFF" in msg
        assert proc.poll() is not None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
