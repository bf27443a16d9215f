"""Every code block of README.md runs, offline, as a reader would run it.

* ```python blocks run in README order, cumulatively in one namespace (a README is read top to
  bottom), in a temporary working directory holding ``photos/`` (drawn sample images and texts)
  and ``query.jpg``.
* Hub names load through the real name-based path: a Hugging Face cache seeded with tiny
  random-weight stand-ins (``mm_rag_components.testing.seed_tiny_hub_cache``) for every hub id the
  README names plus the CLI's default model, with ``HF_HUB_OFFLINE=1``.
* Names a reader supplies (their LLM, their labels …) come from :func:`readme_prelude`.
* ```bash blocks: each ``mm-rag ...`` line runs through ``cli.main`` (``[--opt]`` optional parts
  are run included) and must exit 0; ``make run`` runs as a subprocess with ``VENV`` set to this
  interpreter's environment (``-o setup`` when its install stamp is older than pyproject.toml, so
  the test never installs anything) and ``ARGS=--db <tmp>`` so the checkout stays clean.
  ``make test`` is not run: it is what CI runs, and it runs this test (recursion).
* A block opts out only with a visible marker line ``# readme-test: skip <reason>``; the reason
  must name the test that runs that code instead (``tests/…``, a glob allowed) and every path it
  names must exist (``test_readme_opt_outs_give_a_reason_and_the_test_that_covers_them``), and
  the block's ``mm-rag`` lines must still parse with the CLI's parser.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse, LLMMetadata, MessageRole
from llama_index.core.llms.custom import CustomLLM

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = re.compile(r"^\s*#\s*readme-test:\s*skip\b[ \t]*(.*)$", re.M)
FENCE = re.compile(r"^```[ \t]*([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
HUB_ID = re.compile(r"""["']([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)["']""")
#: Commands of bash blocks never run here, and why.
NOT_RUN = {("make", "test"): "make test is what CI runs, and it runs this test (recursion)"}
#: Paths an opt-out reason names (what runs the block's code instead).
COVERED_BY = re.compile(r"\b((?:tests|scripts|benchmarks|docs)/[\w*./-]*[\w*])")


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # line of the opening fence in README.md

    @property
    def first_line(self) -> str:
        return next((x.strip() for x in self.code.splitlines() if x.strip()), "")

    @property
    def skip_reason(self) -> str | None:
        found = SKIP.search(self.code)
        return (found.group(1).strip() or "no reason given") if found else None

    def label(self) -> str:
        return f"README.md line {self.line} ({self.lang}): `{self.first_line}`"


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of ``text``, in order."""
    return [Block(m.group(1).lower(), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


class FakeRankingLLM(CustomLLM):
    """A LlamaIndex chat LLM answering a listwise prompt with ``{"ranking": [...]}``: the numbers of
    the prompt's ``Candidate [n]:`` headers, last first (so the reranker visibly applies it)."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="fake-ranking-llm", is_chat_model=True)

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text = "\n".join(getattr(b, "text", None) or "" for m in messages for b in m.blocks)
        ranking = sorted({int(n) for n in re.findall(r"Candidate \[(\d+)\]", text)}, reverse=True)
        answer = f'Each candidate was checked against the query.\n{{"ranking": {ranking}}}'
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=answer))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self.chat(messages, **kwargs)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise NotImplementedError("the listwise reranker uses chat")

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError("the listwise reranker uses chat")


def readme_prelude() -> dict:
    """Placeholders the README leaves to the reader, each replaced by something that runs offline.

    * ``my_multimodal_llm``: any LlamaIndex LLM that takes images (OpenAI, Gemini …) → a scripted
      :class:`FakeRankingLLM` answering ``{"ranking": [...]}`` for the numbered candidates;
    * ``logodds``, ``labels``: a reader's validation log-odds and 0/1 relevance labels → 200
      synthetic pairs;
    * ``model``: a reranker model name → ``HuggingFaceTB/SmolVLM-256M-Instruct`` (seeded tiny stand-in).
    """
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=200)
    return {
        "my_multimodal_llm": FakeRankingLLM(),
        "logodds": (labels * 2.0 - 1.0) * 1.5 + rng.normal(0.0, 1.0, size=200),
        "labels": labels,
        "model": "HuggingFaceTB/SmolVLM-256M-Instruct",
    }


@pytest.fixture(scope="module")
def blocks() -> list[Block]:
    found = readme_blocks(README.read_text(encoding="utf-8"))
    assert any(b.lang in ("python", "py") for b in found), "README.md has no python blocks: is the fence parser broken?"
    return found


@pytest.fixture(scope="module")
def hub_cache(blocks, tmp_path_factory) -> Path:
    """A hub cache with a tiny stand-in for every hub id the README names (and the CLI default)."""
    from mm_rag_components.cli import DEFAULT_MODEL
    from mm_rag_components.testing import TINY_STANDINS, seed_tiny_hub_cache

    named = {m for b in blocks for m in HUB_ID.findall(b.code)} | {DEFAULT_MODEL}
    root = tmp_path_factory.mktemp("readme-hub")
    return seed_tiny_hub_cache(root / "cache", sorted(named & set(TINY_STANDINS)), build_dir=root / "models")


@pytest.fixture()
def workdir(tmp_path, monkeypatch, hub_cache) -> Path:
    from PIL import Image

    from mm_rag_components.testing import use_hub_cache, write_sample_folder

    photos = write_sample_folder(tmp_path / "photos")
    Image.open(photos / "blue_square.png").convert("RGB").save(tmp_path / "query.jpg")
    monkeypatch.chdir(tmp_path)
    with use_hub_cache(hub_cache):
        yield tmp_path


def _run_python(block: Block, namespace: dict) -> str | None:
    """Run a python block; the error text when it raises."""
    try:
        padded = "\n" * block.line + block.code  # tracebacks then give README.md's own line numbers
        exec(compile(padded, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    except BaseException as exc:  # noqa: BLE001 - every failure of a block is reported, SystemExit included
        frames = traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next)  # from the README's frame on
        return "".join(frames).strip()
    return None


def _words(line: str) -> list[str]:
    """Shell words of one command line; a ``$`` prompt is dropped, ``[--opt]`` (documented optional
    parts) are unwrapped."""
    words = shlex.split(line, comments=True)
    words = words[1:] if words[:1] == ["$"] else words
    return [w[1:-1] if len(w) > 2 and w.startswith("[") and w.endswith("]") else w for w in words]


def _command_lines(code: str) -> list[str]:
    """The block's lines, with ``\\``-continued lines joined."""
    return code.replace("\\\n", " ").splitlines()


def _run_cli(words: list[str]) -> str | None:
    from mm_rag_components.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(words[1:])
    return None if status == 0 else f"exit status {status}\n{err.getvalue()[-2000:]}{out.getvalue()[-1000:]}"


def _run_make(words: list[str], hub_cache: Path, tmp: Path) -> str | None:
    from mm_rag_components.testing import hub_cache_env

    if shutil.which("make") is None:
        return "make is not installed"
    stamp = Path(sys.prefix) / ".mm-rag-installed"
    fresh = stamp.is_file() and stamp.stat().st_mtime > (ROOT / "pyproject.toml").stat().st_mtime
    command = ["make", "-C", str(ROOT), *([] if fresh else ["-o", "setup"]), *words[1:], f"ARGS=--db {tmp / 'make-run' / 'chroma'}"]
    env = {**os.environ, **hub_cache_env(hub_cache), "VENV": sys.prefix}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)
    return None if done.returncode == 0 else f"exit status {done.returncode}\n{done.stderr[-2000:]}{done.stdout[-1000:]}"


def _run_bash(block: Block, hub_cache: Path, tmp: Path, not_run: list[str]) -> str | None:
    """Run the block's command lines; the first failure's text."""
    for line in _command_lines(block.code):
        words = _words(line)
        if not words:
            continue
        if tuple(words[:2]) in NOT_RUN:
            not_run.append(f"`{line.strip()}`: {NOT_RUN[tuple(words[:2])]}")
            continue
        if words[0] == "mm-rag":
            error = _run_cli(words)
        elif words[:2] == ["make", "run"]:
            error = _run_make(words, hub_cache, tmp)
        else:
            error = f"the README test does not know how to run `{line.strip()}`; add a handler or a skip marker"
        if error:
            return f"`{line.strip()}` failed: {error}"
    return None


def test_every_readme_block_runs(blocks, workdir, hub_cache, tmp_path_factory):
    namespace: dict = {"__name__": "__readme__", **readme_prelude()}
    failures: list[str] = []
    not_run: list[str] = []
    ran = 0
    for block in blocks:
        if block.skip_reason is not None or block.lang not in ("python", "py", "bash", "sh", "shell", "console"):
            continue
        if block.lang in ("python", "py"):
            error = _run_python(block, namespace)
        else:
            error = _run_bash(block, hub_cache, tmp_path_factory.mktemp("make"), not_run)
        ran += 1
        if error:
            failures.append(f"{block.label()} failed:\n{error}")
    print(f"ran {ran} README blocks; not run: {not_run or 'none'}")
    assert not failures, f"{len(failures)} README block(s) failed (later ones may fail because of earlier ones):\n\n" + "\n\n".join(failures)


def opt_out_problems(block: Block, root: Path = ROOT) -> list[str]:
    """What is wrong with an opted-out block's marker: no reason, no test named as covering it, or
    a named path (``tests/…``, ``scripts/…``, ``benchmarks/…``, ``docs/…``; globs allowed) that
    matches nothing."""
    reason = block.skip_reason or ""
    if not reason or reason == "no reason given":
        return [f"{block.label()}: '# readme-test: skip' gives no reason"]
    named = COVERED_BY.findall(reason)
    problems = [f"{block.label()}: {path} does not exist" for path in named if not any(root.glob(path))]
    if not any(path.startswith("tests/") for path in named):
        problems.append(f"{block.label()}: the reason names no test that runs it instead (e.g. tests/test_cli.py): {reason!r}")
    return problems


def test_readme_opt_outs_give_a_reason_and_the_test_that_covers_them(blocks):
    """Each ``# readme-test: skip`` says why and which test runs that code instead, and that test exists."""
    opted_out = [b for b in blocks if b.skip_reason is not None]
    problems = [problem for block in opted_out for problem in opt_out_problems(block)]
    print("README blocks opted out:", "; ".join(f"{b.label()}: {b.skip_reason}" for b in opted_out) or "none")
    assert not problems, "\n".join(problems)


def test_an_opt_out_without_a_reason_or_a_real_test_is_refused(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_there.py").write_text("")
    marked = lambda reason: Block("bash", f"# readme-test: skip {reason}\nmm-rag demo\n", 9)  # noqa: E731
    assert opt_out_problems(marked("slow (tests/test_there.py runs it)"), tmp_path) == []
    assert opt_out_problems(marked("slow (tests/test_the*.py run it)"), tmp_path) == []
    assert "gives no reason" in opt_out_problems(marked(""), tmp_path)[0]
    assert "names no test" in opt_out_problems(marked("slow (scripts/x.py runs it)"), tmp_path)[-1]
    assert "tests/test_gone.py does not exist" in opt_out_problems(marked("slow (tests/test_gone.py)"), tmp_path)[0]


def test_commands_of_skipped_blocks_parse(blocks):
    """A block that cannot run here (a server, minutes of work) still names only real options:
    each of its ``mm-rag`` lines parses with the CLI's own parser."""
    from mm_rag_components.cli import build_parser
    from mm_rag_components.cli.common import UsageError

    failures, parsed = [], 0
    for block in blocks:
        if block.skip_reason is None:
            continue
        for line in _command_lines(block.code):
            words = _words(line)
            if words[:1] != ["mm-rag"]:
                continue
            parsed += 1
            try:
                build_parser({words[1]}).parse_args(words[1:])
            except (UsageError, SystemExit) as exc:
                failures.append(f"{block.label()}: `{line.strip()}`: {exc}")
    assert parsed > 0 and not failures, failures


def test_block_parser_finds_fences_markers_and_lines():
    text = "intro\n```python\nx = 1\n```\n\n```bash\n# readme-test: skip needs a GPU\nmm-rag demo\n```\n"
    python, bash = readme_blocks(text)
    assert (python.lang, python.code, python.line, python.skip_reason) == ("python", "x = 1\n", 2, None)
    assert (bash.lang, bash.line, bash.skip_reason, bash.first_line) == ("bash", 6, "needs a GPU", "# readme-test: skip needs a GPU")
    assert _words("mm-rag ingest photos/ [--delete-missing]   # a comment") == ["mm-rag", "ingest", "photos/", "--delete-missing"]
    assert _words("$ mm-rag demo") == ["mm-rag", "demo"]
    assert _command_lines("mm-rag query x \\\n  --top-k 2\nmm-rag demo\n") == ["mm-rag query x    --top-k 2", "mm-rag demo"]


def test_a_failing_block_is_reported_with_its_first_line():
    block = Block("python", "\nraise ValueError('boom')\n", 7)
    error = _run_python(block, {})
    assert error is not None and "ValueError: boom" in error
    assert block.label() == "README.md line 7 (python): `raise ValueError('boom')`"


def test_bash_lines_fail_on_a_bad_exit_status_or_an_unknown_command(tmp_path):
    not_run: list[str] = []
    error = _run_bash(Block("bash", "make test\nmm-rag query --top-k 0 x\n", 3), tmp_path, tmp_path, not_run)
    assert error is not None and error.startswith("`mm-rag query --top-k 0 x` failed: exit status 2")
    assert not_run and not_run[0].startswith("`make test`")
    error = _run_bash(Block("bash", "echo hello\n", 3), tmp_path, tmp_path, [])
    assert error is not None and "does not know how to run `echo hello`" in error
