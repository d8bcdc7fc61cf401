"""An acknowledged write survives ``kill -9`` of the server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data, port, log):
    with open(log, "ab") as out:  # the child keeps its own descriptor
        process = subprocess.Popen([sys.executable, "-m", "embedlab.cli", "serve", "--data", str(data), "--port",
                                    str(port)], stdout=out, stderr=out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server was not ready within 120 s")


def test_acknowledged_writes_survive_kill_9(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start(tmp_path / "data", port, tmp_path / "server.log")
    try:
        assert httpx.post(f"{url}/v1/collections", json={"name": "notes", "dim": 384}).status_code == 201
        for i in range(5):
            r = httpx.post(f"{url}/v1/collections/notes/documents", timeout=60,
                           json={"ids": [f"n{i}"], "texts": [f"note number {i} about topic {i}"],
                                 "metadata": [{"i": i}]})
            assert r.status_code == 200  # acknowledged
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    server = start(tmp_path / "data", port, tmp_path / "server.log")
    try:
        info = httpx.get(f"{url}/v1/collections/notes").json()
        assert info["count"] == 5
        hits = httpx.post(f"{url}/v1/collections/notes/search", timeout=60,
                          json={"queries": ["note number 3 about topic 3"], "k": 1, "filter": "i >= 2"}).json()
        assert hits["results"][0]["hits"][0]["id"] == "n3"
    finally:
        server.terminate()
        server.wait(timeout=30)
