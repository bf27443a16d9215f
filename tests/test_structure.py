"""The package's shape, checked from its source: no import cycles between modules, small modules,
a core that never reaches into its framework adapters, public names that all resolve, deprecated
names that still resolve with a warning, and adapter options declared by the core's own names."""

from __future__ import annotations

import ast
import importlib
import inspect
import warnings
from pathlib import Path

import pytest

PACKAGE = "mm_rag_components"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE
#: The one place the core loads an adapter: the default text splitter is LlamaIndex's
#: SentenceSplitter, imported lazily, with a plain splitter when LlamaIndex is missing.
CORE_TO_ADAPTER_ALLOWED = {(f"{PACKAGE}.chunking", f"{PACKAGE}.integrations.llama_index.splitter")}
FRAMEWORKS = ("llama_index", "haystack", "langchain", "langchain_core", "langchain_classic")
MAX_LINES = 450  # "about 400": a module past this holds more than one job


def _modules() -> dict[str, Path]:
    modules = {}
    for path in SOURCE.rglob("*.py"):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(modules of this package, top-level external packages) that ``name`` imports anywhere:
    at the top, inside functions, and under ``TYPE_CHECKING``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith(PACKAGE):
                outside.add(target.split(".")[0])
                continue
            for alias in node.names:
                inside.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                (inside if alias.name.startswith(PACKAGE) else outside).add(
                    alias.name if alias.name.startswith(PACKAGE) else alias.name.split(".")[0])
    inside.discard(name)
    return inside, outside


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(name, path, modules)[0] if m in modules} for name, path in modules.items()}


def test_every_internal_import_names_a_module():
    """A lazy import of a module that moved fails only when that line runs: find them all now."""
    modules = _modules()
    broken = {name: sorted(m for m in _imports(name, path, modules)[0] if m not in modules) for name, path in modules.items()}
    assert {name: found for name, found in broken.items() if found} == {}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules(graph):
    assert _cycles(graph) == [], "modules that import each other (directly or in a ring)"


def test_the_graph_sees_lazy_and_type_only_imports(graph):
    # a function-level import and a TYPE_CHECKING import both count
    assert f"{PACKAGE}.scoring.transformers_scorer" in graph[f"{PACKAGE}.rerank.pointwise"]
    assert f"{PACKAGE}.types" in graph[f"{PACKAGE}.media"]


def test_no_module_is_too_long():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these (one job per module, at most ~{MAX_LINES} lines)"


def test_the_core_never_reaches_into_adapters_or_frameworks():
    modules = _modules()
    problems = []
    for name, path in modules.items():
        if name.startswith(f"{PACKAGE}.integrations"):
            continue
        inside, outside = _imports(name, path, modules)
        problems += [(name, m) for m in inside if m.startswith(f"{PACKAGE}.integrations") and (name, m) not in CORE_TO_ADAPTER_ALLOWED]
        problems += [(name, m) for m in outside if m in FRAMEWORKS]
    assert problems == []


def test_adapters_do_not_import_each_other():
    modules = _modules()
    crossing = []
    for name, path in modules.items():
        if not name.startswith(f"{PACKAGE}.integrations."):
            continue
        framework = name.split(".")[2]
        inside, _ = _imports(name, path, modules)
        crossing += [(name, m) for m in inside if m.startswith(f"{PACKAGE}.integrations.") and m.split(".")[2] != framework]
    assert crossing == []


PUBLIC_PACKAGES = [
    PACKAGE, f"{PACKAGE}.generation", f"{PACKAGE}.datasets", f"{PACKAGE}.eval", f"{PACKAGE}.rerank", f"{PACKAGE}.remote",
    f"{PACKAGE}.scoring", f"{PACKAGE}.training", f"{PACKAGE}.integrations.llama_index", f"{PACKAGE}.integrations.haystack",
    f"{PACKAGE}.integrations.langchain",
]


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_every_public_name_resolves(package):
    module = importlib.import_module(package)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # no public name may be a deprecated alias
        missing = [name for name in module.__all__ if getattr(module, name, None) is None and name != "__version__"]
    assert missing == []


DEPRECATED = [
    (PACKAGE, "PointwiseReranker", f"{PACKAGE}.integrations.llama_index", "PointwiseReranker"),
    (PACKAGE, "ListwiseReranker", f"{PACKAGE}.integrations.llama_index", "ListwiseReranker"),
    (PACKAGE, "MultimodalRetriever", f"{PACKAGE}.integrations.llama_index", "MultimodalRetriever"),
    (PACKAGE, "RelevanceFilter", f"{PACKAGE}.integrations.llama_index", "RelevanceFilter"),
    (f"{PACKAGE}.remote", "run_parity_command", f"{PACKAGE}.cli.parity_commands", "run"),
    (f"{PACKAGE}.training", "cmd_train", f"{PACKAGE}.cli.train_commands", "cmd_train"),
    (f"{PACKAGE}.rerank.chat", "ChatTurn", f"{PACKAGE}.generation", "ChatTurn"),
    (f"{PACKAGE}.rerank.chat", "encode_image", f"{PACKAGE}.generation", "encode_image"),
    (f"{PACKAGE}.rerank.generators", "TransformersGenerator", f"{PACKAGE}.generation.transformers", "TransformersGenerator"),
]


@pytest.mark.parametrize(("old", "name", "new", "new_name"), DEPRECATED)
def test_deprecated_names_still_resolve_with_a_warning(old, name, new, new_name):
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), new_name)


def test_the_generator_protocol_has_one_name():
    from mm_rag_components.generation import Generator, ListwiseGenerator

    assert ListwiseGenerator is Generator


def _parameters(function) -> set[str]:
    return {p.name for p in inspect.signature(function).parameters.values() if p.kind is p.KEYWORD_ONLY}


def test_reranker_options_are_the_cores_own():
    from mm_rag_components.generation.transformers import TransformersGenerator
    from mm_rag_components.rerank.listwise import ListwiseRanker
    from mm_rag_components.rerank.options import ListwiseOptions, PointwiseOptions
    from mm_rag_components.rerank.pointwise import PointwiseRanker
    from mm_rag_components.scoring.transformers_scorer import TransformersScorer

    assert set(PointwiseOptions.__annotations__) == _parameters(PointwiseRanker.__init__) | _parameters(TransformersScorer.__init__)
    assert set(ListwiseOptions.__annotations__) == _parameters(ListwiseRanker.__init__) | set(TransformersGenerator.OPTIONS)


@pytest.mark.parametrize("framework", ["llama_index", "haystack", "langchain"])
def test_adapters_declare_their_options(framework):
    adapters = importlib.import_module(f"{PACKAGE}.integrations.{framework}")
    for cls, options in ((adapters.PointwiseReranker, "PointwiseOptions"), (adapters.ListwiseReranker, "ListwiseOptions")):
        init = inspect.signature(cls.__init__)
        variadic = [p for p in init.parameters.values() if p.kind is p.VAR_KEYWORD]
        assert [str(p.annotation) for p in variadic] == [f"Unpack[{options}]"], cls
