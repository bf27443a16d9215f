"""The examples run end to end offline (tiny models) and print what they claim to.

Each example's ``main(argv)`` runs in this process (with ``examples/`` on ``sys.path``, as when
it runs as a script), all of them sharing one set of tiny models.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from remote_support import FakeServer, Reply

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # Haystack reads it once, at import

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ANSWERING = ("llamaindex_workflow", "haystack_pipeline", "langchain_chain")
SERVER_REPLY = "It is the red circle [1], like [3]; see also [7]."


@dataclass
class Run:
    lines: list[str]
    result: Any


@contextlib.contextmanager
def examples_on_path() -> Iterator[None]:
    """``examples/`` on ``sys.path``, as when a script there runs (they import ``_common``)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield
    finally:
        sys.path.remove(str(EXAMPLES))


def run_example(name: str, argv: list[str]) -> Run:
    """``examples/<name>.py``'s ``main(argv)``, its printed lines and its return value."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic (LlamaIndex events) resolves annotations through it
    with examples_on_path():
        spec.loader.exec_module(module)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = module.main(argv)
    return Run(out.getvalue().splitlines(), result)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    with examples_on_path():
        from _common import build_tiny
    root = tmp_path_factory.mktemp("example-models")
    build_tiny(root)
    return root


@pytest.fixture(scope="module")
def tiny_runs(tiny_dir, tmp_path_factory) -> dict[str, Run]:
    """Each QA example once, with the tiny models (answers from a tiny random VLM)."""
    root = tmp_path_factory.mktemp("example-runs")
    names = ("llamaindex_query_engine", *ANSWERING)
    return {n: run_example(n, ["--tiny", "--tiny-dir", str(tiny_dir), "--db", str(root / n)]) for n in names}


def check_kept_sources(answer: Any) -> None:
    """The filter kept 3 of the 8 retrieved; they are the answer's sources, best reranked first."""
    assert answer.flag is None and answer.error is None
    assert len(answer.sources) == 3
    scores = [s.metadata["rerank_score"] for s in answer.sources]
    assert scores == sorted(scores, reverse=True)
    assert all(s.modality == "image" and s.metadata["file_name"].endswith(".png") for s in answer.sources)


def test_a_tiny_run_says_first_that_its_output_is_not_meaningful(tiny_runs) -> None:
    with examples_on_path():
        from _common import TINY_NOTE
    assert "NOT meaningful" in TINY_NOTE
    assert {name: run.lines[0] for name, run in tiny_runs.items()} == dict.fromkeys(tiny_runs, TINY_NOTE)


@pytest.mark.parametrize("name", ANSWERING)
def test_qa_example_retrieves_reranks_filters_and_answers(tiny_runs, name) -> None:
    run = tiny_runs[name]
    assert run.lines[1].startswith("added 15")
    assert "kept 3 of 8; dropped over_max_k=5" in "\n".join(run.lines)  # the filter's report
    check_kept_sources(run.result)
    numbered = [line for line in run.lines if line.lstrip().startswith("[")]
    assert [line.split()[0] for line in numbered] == ["[1]", "[2]", "[3]"]
    assert run.lines[-1] == f"cited: {run.result.cited}"


def test_workflow_example_streams_one_event_per_stage(tiny_runs) -> None:
    events = [line for line in tiny_runs["llamaindex_workflow"].lines if line.startswith("event ")]
    assert events == [
        "event Retrieved: 8 nodes",
        "event Reranked: 8 nodes",
        "event Filtered: 3 nodes (kept 3 of 8; dropped over_max_k=5)",
    ]


def test_the_three_frameworks_give_the_same_sources_and_answer(tiny_runs) -> None:
    """Same models, same prompt, greedy decoding: the adapters only convert."""
    answers = [tiny_runs[name].result for name in ANSWERING]
    assert len({tuple(s.id for s in a.sources) for a in answers}) == 1
    assert len({a.text for a in answers}) == 1
    assert answers[0].text  # the tiny VLM did generate something


def test_query_engine_example_answers_with_llamaindex_synthesizer(tiny_runs) -> None:
    run = tiny_runs["llamaindex_query_engine"]
    response = run.result
    assert "kept 3 of 8; dropped over_max_k=5" in run.lines
    assert len(response.source_nodes) == 3
    assert all("rerank_score" in n.node.metadata for n in response.source_nodes)
    assert str(response) and f"answer: {str(response)!r}" in run.lines
    ranked = [tiny_runs["llamaindex_workflow"].result.sources[k].id for k in range(3)]
    assert [n.node.node_id for n in response.source_nodes] == ranked


def chat_completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "served",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def run_with_server(name: str, tiny_dir: Path, tmp_path: Path) -> Run:
    """``name`` with ``--llm-url`` on a scripted server; checks the one request it got: the
    framework's OpenAI client sent the question and the 3 kept images."""
    with FakeServer(lambda path, body, headers: Reply(body=chat_completion(SERVER_REPLY))) as server:
        run = run_example(name, ["--tiny", "--tiny-dir", str(tiny_dir), "--db", str(tmp_path / "db"),
                                 "--llm-url", server.url + "/v1", "--llm-model", "served"])
    (body,) = server.bodies("/chat/completions")
    assert body["model"] == "served"
    user = body["messages"][-1]["content"]
    assert sum(1 for part in user if part.get("type") == "image_url") == 3
    assert "a red circle" in "".join(part.get("text", "") for part in user)
    return run


@pytest.mark.parametrize("name", ["llamaindex_workflow", "haystack_pipeline"])
def test_qa_example_answers_through_a_server_and_reads_citations(tiny_dir, tmp_path, name) -> None:
    run = run_with_server(name, tiny_dir, tmp_path)
    answer = run.result
    check_kept_sources(answer)
    assert answer.text == SERVER_REPLY
    assert (answer.cited, answer.invalid_citations) == ([1, 3], [7])
    assert run.lines[-1] == "cited: [1, 3]"


def test_query_engine_example_sends_the_kept_images_to_the_llm(tiny_dir, tmp_path) -> None:
    run = run_with_server("llamaindex_query_engine", tiny_dir, tmp_path)
    assert str(run.result) == SERVER_REPLY
    assert len(run.result.source_nodes) == 3


def test_pipeline_example_runs_offline(tiny_dir, tmp_path) -> None:
    run = run_example("multimodal_rag_pipeline", ["--tiny", "--tiny-dir", str(tiny_dir), "--db", str(tmp_path / "db")])
    assert run.lines[1].startswith("added 15")
    assert sum(1 for line in run.lines if "p=" in line) == 3
    assert run.lines[-1] == "kept 3 of 8; dropped over_max_k=5"


def test_an_example_without_its_models_offline_ends_in_one_line(tiny_dir, tmp_path) -> None:
    """No --tiny, offline, the real models not cached: the library's one-line error and a hint, no traceback."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache"), "HAYSTACK_TELEMETRY_ENABLED": "False"}
    done = subprocess.run([sys.executable, str(EXAMPLES / "llamaindex_workflow.py"), "--folder", str(tiny_dir / "data"),
                           "--db", str(tmp_path / "db")], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot load embedding model: sentence-transformers/clip-ViT-B-32 is not cached")
    assert line.endswith("(to try this example offline, pass --tiny)")


def test_run_finds_a_wrapped_library_error_and_leaves_bugs_their_traceback() -> None:
    from mm_rag_components.errors import MMRagError, ModelError

    with examples_on_path():
        from _common import run

    def wrapped() -> None:
        try:
            raise MMRagError("the folder\nis unreadable")
        except MMRagError as exc:
            raise RuntimeError("a framework's own wrapper") from exc

    with pytest.raises(SystemExit) as stopped:
        run(wrapped)
    assert stopped.value.code == "error: the folder is unreadable"
    with pytest.raises(SystemExit) as stopped:
        run(lambda: (_ for _ in ()).throw(ModelError("no weights")))
    assert stopped.value.code == "error: no weights (to try this example offline, pass --tiny)"
    with pytest.raises(ZeroDivisionError):
        run(lambda: 1 / 0)


# --------------------------------------------------------------------------- chat with your PDFs


def test_chat_with_pdfs_answers_a_question_from_pages(tiny_dir, tmp_path) -> None:
    """Generated PDFs (drawn shapes, a paragraph a page) ingest as pages; the sources are pages
    (image and text together), named by document and page number."""
    from mm_rag_components.types import MIXED, PAGE, PAGE_ID

    run = run_example("chat_with_pdfs", ["--tiny", "--tiny-dir", str(tiny_dir), "--db", str(tmp_path / "db"), "--question", "a red circle"])
    with examples_on_path():
        from _common import TINY_NOTE
    assert run.lines[0] == TINY_NOTE
    assert run.lines[1].startswith("added 3,") and "skipped 0" in run.lines[1]  # three PDFs
    kept = run.result.kept
    assert 1 <= len(kept) <= 3 and all(c.modality == MIXED and c.image_path and c.text for c in kept)
    assert all(c.id == c.metadata[PAGE_ID] and c.metadata["file_name"].endswith(".pdf") for c in kept)
    listed = [line for line in run.lines if line.lstrip().startswith(("[", "*["))]
    assert [line.split()[-1] for line in listed] == [f"{c.metadata[PAGE]}" for c in kept]
    assert all(f"{c.metadata['file_name']}, p. {c.metadata[PAGE]}" in line for c, line in zip(kept, listed))


def test_chat_with_pdfs_through_a_server_cites_pages(tiny_dir, tmp_path) -> None:
    with FakeServer(lambda path, body, headers: Reply(body=chat_completion("The circle is on [2], and [1]."))) as server:
        run = run_example("chat_with_pdfs", ["--tiny", "--tiny-dir", str(tiny_dir), "--db", str(tmp_path / "db"),
                                             "--question", "a red circle", "--llm-url", server.url + "/v1", "--llm-model", "served"])
    kept = run.result.kept
    (body,) = server.bodies("/chat/completions")
    user = body["messages"][-1]["content"]
    assert sum(1 for part in user if part.get("type") == "image_url") == len(kept)  # every page's image …
    text = "".join(part.get("text", "") for part in user)
    assert all(c.text.split()[0] in text for c in kept)  # … and its text
    expected = [f"[{n}] {kept[n - 1].metadata['file_name']}, p. {kept[n - 1].metadata['page']}" for n in (2, 1)]
    assert run.result.answer.references == expected
    assert run.lines[-1] == "references: " + "; ".join(expected)


def test_chat_with_pdfs_runs_the_terminal_chat(tiny_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a blue square\n/quit\n"))
    run = run_example("chat_with_pdfs", ["--tiny", "--tiny-dir", str(tiny_dir), "--db", str(tmp_path / "db")])
    assert run.result is None
    out = "\n".join(run.lines)
    assert "you> assistant> " in out and ".pdf, p. " in out
