"""Question answering over an index: ``query`` with reranking and filtering, ``chat`` in the
terminal and ``serve`` (the web chat), all on :class:`~mm_rag_components.app.pipeline.QAPipeline`.

Every argument, model spec and the index are checked before any model loads.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from . import models, store
from .common import TINY_LABEL, bounded_int, expand, fail, positive_seconds, say, score_text

#: ``--filter`` keys: the :class:`~mm_rag_components.filters.FilterPolicy` fields and their types.
FILTER_KEYS: dict[str, type] = {
    "threshold": float, "max_k": int, "margin": float, "top_p": float, "temperature": float,
    "min_keep": int, "score_key": str, "on_missing": str,
}


def filter_setting(text: str) -> dict[str, Any]:
    """An argparse type: ``KEY=VALUE[,KEY=VALUE…]`` of :data:`FILTER_KEYS`, values converted."""
    settings: dict[str, Any] = {}
    for item in (part.strip() for part in text.split(",")):
        key, sep, raw = item.partition("=")
        key, raw = key.strip().replace("-", "_"), raw.strip()
        if not sep or not raw:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item[:40]!r}")
        kind = FILTER_KEYS.get(key)
        if kind is None:
            raise argparse.ArgumentTypeError(f"unknown filter setting {key[:40]!r}; known: {', '.join(FILTER_KEYS)}")
        try:
            settings[key] = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{key} needs {'an integer' if kind is int else 'a number'}, got {raw[:40]!r}") from None
    return settings


@dataclass
class QAPlan:
    """What a QA command will build, checked without loading anything."""

    reranker: models.ModelSpec | None = None
    answer: models.ModelSpec | None = None
    policy: Any = None
    notes: list[str] = field(default_factory=list)

    @property
    def tiny(self) -> bool:
        return any(spec is not None and spec.tiny for spec in (self.reranker, self.answer))

    @property
    def remote(self) -> bool:
        """Every model after retrieval is a server (questions may then run concurrently)."""
        return all(spec.kind == "url" for spec in (self.reranker, self.answer) if spec is not None)


def plan(args: argparse.Namespace, *, answer: bool) -> QAPlan:
    """Check the rerank, filter and answer options (no model loads)."""
    from ..filters import FilterPolicy

    out = QAPlan()
    if args.rerank == "none":
        for option, value in (("--reranker", args.reranker), ("--reranker-model", args.reranker_model)):
            if value is not None:
                raise ConfigError(f"{option} needs --rerank pointwise or --rerank listwise")
    else:
        out.reranker = models.model_spec("--reranker", args.reranker, args.reranker_model, "--reranker-model")
    if answer:
        out.answer = models.model_spec("--answer-model", args.answer_model, args.answer_model_name, "--answer-model-name")
    if args.text_only_server and not any(spec is not None and spec.kind == "url" for spec in (out.reranker, out.answer)):
        raise ConfigError("--text-only-server applies to a model named by a server URL (--reranker or --answer-model)")
    if getattr(args, "max_concurrent_questions", None) not in (None, 1) and not out.remote:
        raise ConfigError("--max-concurrent-questions needs the reranker and the answer model on servers (URLs): local "
                          "models answer one question at a time (let more users wait with --queue N)")
    if args.filter:
        settings: dict[str, Any] = {}
        for group in args.filter:
            for key, value in group.items():
                if key in settings:
                    raise ConfigError(f"--filter sets {key} twice")
                settings[key] = value
        out.policy = FilterPolicy.from_kwargs(**settings)
    return out


def pipeline(args: argparse.Namespace, qa: QAPlan, embedder: str, chroma: Any, modalities: list[str]) -> Any:
    """Load the embedder, reranker and answerer and put them in a :class:`QAPipeline`."""
    from ..app.pipeline import QAPipeline
    from ..retrieval import RetrievalOptions

    reranker = None
    if qa.reranker is not None:
        build = models.pointwise_ranker if args.rerank == "pointwise" else models.listwise_ranker
        reranker = build(qa.reranker, args)
    answerer = models.answerer(qa.answer, args) if qa.answer is not None else None
    return QAPipeline(
        store.index(args, embedder, chroma), retrieval=RetrievalOptions(modalities=modalities, top_k=args.top_k, pages=args.pages),
        reranker=reranker, relevance_filter=qa.policy, answerer=answerer,
    )


def _describe(args: argparse.Namespace, qa: QAPlan, embedder: str, tiny_embedder: bool) -> dict[str, Any]:
    return {
        "embedder": embedder + (f" {TINY_LABEL}" if tiny_embedder else ""),
        "rerank": args.rerank,
        "reranker": qa.reranker.describe() if qa.reranker else None,
        **({"answer_model": qa.answer.describe()} if qa.answer else {}),
    }


def _prepare(args: argparse.Namespace, *, answer: bool, check: Callable[[], Any] | None = None) -> tuple[Any, dict[str, Any], bool]:
    """(pipeline, model descriptions, any tiny model) after every check (``check()`` runs last,
    before any model is built)."""
    qa = plan(args, answer=answer)
    chroma, modalities = store.existing_index(args)
    if check is not None:
        check()
    embedder, tiny = store.choose_model(args, fallback=False)
    built = pipeline(args, qa, embedder, chroma, modalities)
    return built, _describe(args, qa, embedder, tiny), tiny or qa.tiny


# --------------------------------------------------------------------------- query


def search_query(args: argparse.Namespace, text: str | None, image: str | None) -> int:
    """``mm-rag query`` with ``--rerank``, ``--filter`` or ``--json``."""
    from ..types import Query

    qa_pipeline, described, tiny = _prepare(args, answer=False)
    turn = qa_pipeline.search(Query(text=text, image=image))
    if args.json:
        data = turn.to_dict()
        data.pop("answer", None)
        data["ranked"] = len(turn.ranked)
        data["models"] = described
        data["tiny_models"] = tiny
        say(json.dumps(data, indent=2, ensure_ascii=False))
        return _nothing_scored(turn)
    for note in turn.notes:
        say(f"note: {note}")
    say(f"reranker: {args.rerank + ', ' + described['reranker'] if described['reranker'] else 'none'}" + (f"  (filter kept {len(turn.kept)} of {len(turn.ranked)})" if args.filter else ""))
    for rank, c in enumerate(turn.kept, start=1):
        say(f"  {rank:>2}. [{c.modality:5}] {score_text(c.score)}  {_scores(c)}  {store.shown(c)}")
    for dropped in turn.dropped:
        c = dropped.candidate
        say(f"   -  [{c.modality:5}] {score_text(c.score)}  {_scores(c)}  {store.shown(c)}  (dropped: {dropped.reason})")
    if not turn.ranked:
        say("no matches")
    if tiny:
        say(f"  {TINY_LABEL}")
    return _nothing_scored(turn)


def _nothing_scored(turn: Any) -> int:
    """Exit status 0, or (a reranker that scored no candidate at all) one error line and 2."""
    from ..rerank.pointwise import is_unscored

    if not turn.ranked or not all(is_unscored(c) for c in turn.ranked):
        return 0
    why = Counter(c.metadata.get("rerank_flag") for c in turn.ranked)
    return fail(f"the reranker could not score any of the {len(turn.ranked)} candidates "
                f"({', '.join(f'{flag}: {n}' for flag, n in why.items())}); they are listed unscored, in retrieval order")


def _scores(c: Any) -> str:
    meta = c.metadata
    parts = []
    for key, label in (("retrieval_score", "retrieval"), ("rerank_score", "rerank"), ("listwise_score", "listwise")):
        if isinstance(meta.get(key), (int, float)):
            parts.append(f"{label} {meta[key]:.3f}")
        elif key == "rerank_score" and key in meta:  # present but None: the reranker could not score it
            parts.append(f"rerank none ({meta.get('rerank_flag')})")
    return "  ".join(parts)


# --------------------------------------------------------------------------- chat and serve


def _header(described: dict[str, Any], tiny: bool) -> None:
    """Which models answer (tiny ones flagged), before the first question."""
    say(f"embedder: {described['embedder']}")
    rerank = described["rerank"]
    say(f"reranker: {'none' if rerank == 'none' else rerank + ', ' + described['reranker']}")
    say(f"answer model: {described['answer_model']}")
    if tiny:
        say(f"note: {TINY_NOTE[0].lower()}{TINY_NOTE[1:]}")


def cmd_chat(args: argparse.Namespace) -> int:
    """Answer questions typed on stdin; ``/image PATH`` attaches an image to the next one."""
    from ..app.pipeline import Conversation
    from ..app.terminal import run_chat

    qa_pipeline, described, tiny = _prepare(args, answer=True)
    _header(described, tiny)
    qa_pipeline.warm_up()
    answered = run_chat(Conversation(qa_pipeline, max_exchanges=args.history), sys.stdin, sys.stdout)
    say(f"({answered} question{'' if answered == 1 else 's'} answered)")
    return 0


def check_listen(host: str, port: int) -> None:
    """Refuse an address that cannot be listened on (before any model loads)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--bind {host}: not an address of this machine ({exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


#: What the terminal and the web page say, once, when a tiny model is in use.
TINY_NOTE = "Tiny random-weight test models are in use (offline smoke test): answers and rankings are NOT meaningful."
#: Environment variable carrying ``mm-rag serve``'s arguments to its worker processes.
WORKER_ARGV = "MM_RAG_SERVE_ARGV"


def chat_options(args: argparse.Namespace) -> dict[str, Any]:
    """``create_app`` options from ``serve``'s arguments (the session store opened here)."""
    from ..app.guards import check_allowed_hosts
    from ..app.sessions import SessionStore

    path = args.sessions
    if path is None and args.workers > 1:
        path = str(expand(args.db).parent / "sessions.sqlite")  # the workers must share one
    sessions = SessionStore(path, max_sessions=args.max_sessions, max_age=args.session_ttl, max_exchanges=args.history,
                            max_sessions_per_client=args.max_sessions_per_client)
    return {"sessions": sessions, "max_concurrent_questions": args.max_concurrent_questions, "queue": args.queue,
            "max_question_chars": args.max_question_chars, "allowed_hosts": check_allowed_hosts(allowed_hosts(args))}


def allowed_hosts(args: argparse.Namespace) -> list[str]:
    """The host names the web chat answers to: ``--allowed-host``, the ``--bind`` name and this
    machine's names (IP addresses and ``localhost`` always)."""
    names = [*(args.allowed_host or []), args.bind]
    if not _loopback(args.bind):
        names += [socket.gethostname(), socket.getfqdn()]
    return [name for name in dict.fromkeys(names) if name and name not in ("0.0.0.0", "::")]


def _app(args: argparse.Namespace) -> tuple[Any, dict[str, Any], bool]:
    """(web app, model descriptions, any tiny model); the session store is opened before any model."""
    from ..app.web import create_app

    options: dict[str, Any] = {}
    qa_pipeline, described, tiny = _prepare(args, answer=True, check=lambda: options.update(chat_options(args)))
    note = TINY_NOTE if tiny else ""
    return create_app(qa_pipeline, note=note, **options), described, tiny


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the web chat on ``--bind``:``--http-port`` until interrupted (``--workers`` processes)."""
    import uvicorn

    check_listen(args.bind, args.http_port)
    app, described, tiny = _app(args)
    _header(described, tiny)
    service = app.state.service
    say(capacity_line(service))
    if not _loopback(args.bind):
        say(f"note: listening on {args.bind}: anyone who reaches this address can ask questions and see the indexed images")
    url = f"http://{args.bind}:{args.http_port}/"
    if args.workers > 1:
        os.environ[WORKER_ARGV] = json.dumps(args._argv)
        say(f"serving the chat on {url} with {args.workers} worker processes (Ctrl-C to stop)")
        uvicorn.run(f"{__name__}:worker_app", factory=True, host=args.bind, port=args.http_port, workers=args.workers,
                    log_level="warning")
        return 0
    service.pipeline.warm_up()
    say(f"serving the chat on {url} (Ctrl-C to stop)")
    uvicorn.Server(uvicorn.Config(app, host=args.bind, port=args.http_port, log_level="warning")).run()
    return 0


def capacity_line(service: Any) -> str:
    """How many questions run at once, how many wait, where sessions live (serve's start-up line)."""
    capacity, queue = service.admission.capacity, service.admission.queue
    running = f"up to {capacity} at once (models on servers)" if service.concurrent else "one at a time (local models)"
    waiting = f"{queue} more wait in line" if queue else "none waits"
    return f"questions: {running}; {waiting}, then HTTP 503; sessions: {service.sessions.path or 'in memory'}"


def worker_app() -> Any:
    """The web chat of one ``mm-rag serve --workers N`` worker process (its uvicorn factory):
    the parent's arguments, already checked, from :data:`WORKER_ARGV`; models load here."""
    from . import build_parser

    args = build_parser({"serve"}).parse_args(json.loads(os.environ[WORKER_ARGV]))
    app, _, _ = _app(args)
    app.state.service.pipeline.warm_up()
    return app


# --------------------------------------------------------------------------- options


def add_query_options(parser: argparse.ArgumentParser) -> None:
    """``query``'s reranking, filtering and JSON options (query text and --image are its own)."""
    models.add_model_options(parser, answer=False)
    _add_filter(parser)
    parser.add_argument("--json", action="store_true",
                        help="print the result as JSON: kept and dropped candidates with their scores and drop reasons")


def add_chat_options(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("Type a question and press Enter: the answer streams in, then its numbered sources with their retrieval "
                     "and rerank scores (* = cited) and what the filter dropped. /image PATH attaches an image to the next "
                     "question, /reset forgets the conversation, /quit (or end of input) leaves.")
    _add_qa_options(parser)


def _add_qa_options(parser: argparse.ArgumentParser) -> None:
    store.add_retrieval_options(parser)
    models.add_model_options(parser, answer=True)
    _add_filter(parser)
    parser.add_argument("--history", type=bounded_int(1, 1000), default=20, metavar="N",
                        help="earlier exchanges remembered for follow-up questions (default 20)")


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    from ..app.sessions import DEFAULT_MAX_SESSIONS_PER_CLIENT
    from ..app.web import DEFAULT_MAX_CONCURRENT_QUESTIONS, DEFAULT_MAX_QUESTION_CHARS

    parser.epilog = ("Open the printed address in a browser: a question box with an optional image upload, the streamed "
                     "answer, its sources (thumbnails, scores) and the filter's drops. Ctrl-C stops the server.")
    _add_qa_options(parser)
    parser.add_argument("--bind", default="127.0.0.1", metavar="ADDRESS",
                        help="address the web chat listens on (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)")
    parser.add_argument("--http-port", type=bounded_int(1, 65535), default=8765, metavar="PORT",
                        help="port of the web chat (default 8765; --port is the Chroma server's)")
    many = parser.add_argument_group(
        "many users", "with a reranker and an answer model on servers, questions run concurrently; with a local model, one at "
        "a time. Either way up to --queue more wait in line (they see their place) and anyone beyond gets HTTP 503 with Retry-After. "
        "Bounds are per worker process")
    many.add_argument("--max-concurrent-questions", type=bounded_int(1, 10_000), metavar="N",
                      help=f"questions answered at once when the models are servers (default {DEFAULT_MAX_CONCURRENT_QUESTIONS}; "
                           "local models: 1)")
    many.add_argument("--queue", type=bounded_int(0, 10_000), metavar="N",
                      help="questions waiting for a free slot before HTTP 503 (default 0 with servers, 8 with a local model)")
    many.add_argument("--workers", type=bounded_int(1, 64), default=1, metavar="N",
                      help="worker processes behind the one port (default 1); each loads its own models, and they share "
                           "the sessions in a SQLite file (--sessions, default beside --db)")
    many.add_argument("--sessions", metavar="FILE",
                      help="keep conversations in this SQLite file (shared by workers, kept across restarts); default: "
                           "in memory with one worker, DB_PARENT/sessions.sqlite with several")
    many.add_argument("--max-sessions", type=bounded_int(1, 10_000_000), default=1000, metavar="N",
                      help="conversations kept (default 1000); when full, the least recently used of the client address holding the most goes")
    many.add_argument("--session-ttl", type=positive_seconds, default=24 * 3600.0, metavar="SECONDS",
                      help="a conversation idle this long is forgotten (default 86400: a day)")
    many.add_argument("--max-sessions-per-client", type=bounded_int(1, 1_000_000), default=DEFAULT_MAX_SESSIONS_PER_CLIENT,
                      metavar="N", help="conversations one client address holds; its own oldest goes beyond this "
                      f"(default {DEFAULT_MAX_SESSIONS_PER_CLIENT})")
    guard = parser.add_argument_group("limits and access")
    guard.add_argument("--max-question-chars", type=bounded_int(1, 10_000_000), default=DEFAULT_MAX_QUESTION_CHARS, metavar="N",
                       help=f"longest question accepted, in characters (default {DEFAULT_MAX_QUESTION_CHARS:,}; longer: HTTP 413)")
    guard.add_argument("--allowed-host", action="append", metavar="NAME",
                       help="a host name the web chat answers to (repeatable; *.example.org for a domain, * for any): IP "
                            "addresses, localhost, the --bind name and this machine's names always work; other names in the "
                            "Host header are refused (DNS rebinding). Give the name users type, e.g. behind a reverse proxy")


def _add_filter(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--filter", type=filter_setting, action="append", metavar="KEY=VALUE[,KEY=VALUE]",
        help="relevance filter after reranking (or on retrieval scores without --rerank), repeatable: "
             "threshold=T, max_k=K, margin=M, top_p=P, temperature=T, min_keep=K, score_key=rerank_score|retrieval_score|…, "
             "on_missing=drop|keep|error; e.g. --filter threshold=0.5,min_keep=1",
    )


__all__ = ["FILTER_KEYS", "TINY_NOTE", "WORKER_ARGV", "add_chat_options", "add_query_options", "add_serve_options", "allowed_hosts",
           "capacity_line", "chat_options",
           "check_listen", "cmd_chat", "cmd_serve", "filter_setting", "plan", "search_query", "worker_app"]
