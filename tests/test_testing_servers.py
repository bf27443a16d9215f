"""``mm_rag_components.testing.servers``: a server that dies or never answers is a clear error."""

from __future__ import annotations

import sys

import pytest

from mm_rag_components.errors import BackendError
from mm_rag_components.testing.servers import free_port, start_server


def test_a_server_that_exits_before_it_is_ready_is_an_error_with_its_log(tmp_path) -> None:
    log = tmp_path / "server.log"
    command = [sys.executable, "-c", "import sys; print('port taken'); sys.exit(3)"]
    with pytest.raises(BackendError, match=r"exited with 3; its log ends with:\nport taken"):
        start_server(command, log, f"http://127.0.0.1:{free_port()}/health", timeout=30)


def test_a_server_that_never_answers_is_killed_and_reported(tmp_path) -> None:
    """The log already holds a line (start_server appends), so what the error quotes does not depend
    on how fast the child starts; the child waits for a signal, i.e. until it is killed."""
    log = tmp_path / "server.log"
    log.write_text("loading\n")
    command = [sys.executable, "-c", "import signal; signal.pause()"]
    with pytest.raises(BackendError, match=r"did not answer within 1 s; its log ends with:\nloading") as caught:
        start_server(command, log, f"http://127.0.0.1:{free_port()}/health", timeout=1)
    assert "python" in str(caught.value).split(":")[0]  # names the program


def test_a_ready_server_is_returned_running(tmp_path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    process = start_server(command, tmp_path / "server.log", f"http://127.0.0.1:{port}/", timeout=30)
    try:
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()
