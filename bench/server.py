"""A real uvicorn of the service on 127.0.0.1 for the benches: started, timed to ready, always stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    """A started server: its base URL, process, and seconds from spawn to `/readyz` 200."""

    base: str
    process: subprocess.Popen[bytes]
    ready_s: float = 0.0
    ready: dict[str, object] | None = None


def wait_until_ready(server: Server, started: float, timeout: float) -> None:
    """Poll /readyz every 50 ms until 200; fail when the server exits or the time is up."""
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.process.returncode} during warm-up")
        try:
            answer = httpx.get(f"{server.base}/readyz", timeout=5)
            if answer.status_code == 200:
                server.ready_s = time.perf_counter() - started
                server.ready = answer.json()
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"not ready after {timeout:.0f}s")


@contextmanager
def serve(
    index_dir: Path,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    timeout: float = 900,
    app: str = "app.main:app",
) -> Iterator[Server]:
    """Start uvicorn over `index_dir` (CPU) serving `app`, wait for ready, yield it, then stop it."""
    port = free_port()
    environment = {
        **os.environ,
        "IMGSEARCH_INDEX_DIR": str(index_dir),
        "IMGSEARCH_DEVICE": "cpu",
        **(env or {}),
    }
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    output = log.open("wb") if log else subprocess.DEVNULL
    started = time.perf_counter()
    process = subprocess.Popen(
        [*command, "--log-level", "info" if log else "warning"],
        cwd=REPO,
        env=environment,
        stdout=output,
        stderr=subprocess.STDOUT if log else None,
    )
    server = Server(f"http://127.0.0.1:{port}", process)
    try:
        wait_until_ready(server, started, timeout)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log:
            output.close()  # type: ignore[union-attr]


def memory(pid: int) -> dict[str, float]:
    """Resident memory of a process in MB: total, anonymous (private) and file-backed (mapped files)."""
    fields = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in fields:
            found[fields[key]] = int(line.split()[1]) / 1024
    return found
