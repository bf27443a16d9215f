"""A simulated OpenAI-compatible model server: fixed latencies, however many requests overlap.

Stands in for a GPU server that batches (vLLM, SGLang, llama.cpp on a GPU) when this machine has
none: up to ``--capacity`` requests run at once, each taking the same time as alone. A pointwise
request (``logprobs``) answers yes/no log-probabilities after ``--score-ms``; an answer streams
``max_tokens`` words, the first after ``--prefill-ms``, then one per ``--token-ms``. The load
test then measures what `mm-rag serve` itself adds when the model servers are not the limit.

Usage: python benchmarks/simulated_llm.py --port PORT [--score-ms 40] [--prefill-ms 60] [--token-ms 15]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from typing import Any

WORDS = ("The", "sources", "show", "a", "scene", "with", "people", "and", "objects", "[1].")


def yes_no(body: dict[str, Any]) -> dict[str, Any]:
    """A chat answer whose first token lists " yes" and " no" with log-probabilities that depend on the prompt."""
    digest = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).digest()
    yes = -0.1 - digest[0] / 64
    top = [{"token": "yes", "logprob": yes, "bytes": None}, {"token": "no", "logprob": -0.1 - digest[1] / 64, "bytes": None}]
    top.sort(key=lambda t: -t["logprob"])
    return {"choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": top[0]["token"]},
                         "logprobs": {"content": [{**top[0], "top_logprobs": top}]}}]}


def create_app(score_s: float, prefill_s: float, token_s: float, capacity: int) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    slots = asyncio.Semaphore(capacity)

    async def chat(request: Request) -> Response:
        body = await request.json()
        if not body.get("stream"):
            async with slots:
                await asyncio.sleep(score_s)
            return JSONResponse(yes_no(body))

        async def events():
            async with slots:
                await asyncio.sleep(prefill_s)
                count = max(1, int(body.get("max_tokens") or 16))
                for n in range(count):
                    if n:
                        await asyncio.sleep(token_s)
                    delta = {"content": ("" if n == 0 else " ") + WORDS[n % len(WORDS)]}
                    yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': delta, 'finish_reason': None}]})}\n\n"
                yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'length'}]})}\n\n"
                yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "simulated", "object": "model"}]})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models),
                             Route("/health", health)])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--score-ms", type=float, default=40.0, help="one pointwise request (default 40)")
    parser.add_argument("--prefill-ms", type=float, default=60.0, help="an answer's first token (default 60)")
    parser.add_argument("--token-ms", type=float, default=15.0, help="each further token (default 15)")
    parser.add_argument("--capacity", type=int, default=64, help="requests served at once (default 64)")
    args = parser.parse_args()
    app = create_app(args.score_ms / 1000, args.prefill_ms / 1000, args.token_ms / 1000, args.capacity)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
