"""Training pairs for a yes/no reranker: where they come from and how they are split.

Two sources:

* **a captioned folder** (``captions.jsonl``, the layout the evaluation harness reads, see
  :mod:`mm_rag_components.datasets`): queries, corpus and relevance come from one of its tasks
  (``caption2caption``, ``text2image``, ``image2text``); negatives are mined with the project's
  own retriever (:mod:`.mining`);
* **a JSONL of pairs**, one object per line::

      {"query": "a red car", "candidate": "a car painted red", "label": 1, "group": "img-17"}

  with ``query_image`` / ``candidate_image`` (paths relative to the file) for image sides,
  ``label`` 0/1 (or ``true``/``false``) and an optional ``group`` (the item the pair belongs to;
  default: the query image, else the query text).

The split between training and held-out pairs is by **group** (item, e.g. the image whose
captions they are), seeded, never by pair, so no item's captions sit on both sides.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError, MediaError
from ..datasets.task import split_groups
from ..datasets.files import read_jsonl

PAIR_KEYS = ("query", "query_image", "candidate", "candidate_image", "label", "group")


@dataclass(frozen=True)
class Example:
    """One (query, candidate, label) pair; ``group`` is the item it belongs to (the split unit)."""

    query_text: str | None
    query_image: str | None
    doc_text: str | None
    doc_image: str | None
    label: int
    group: str

    def __post_init__(self) -> None:
        if not (self.query_text or "").strip() and self.query_image is None:
            raise ConfigError("a training pair needs a query text or a query image")
        if not (self.doc_text or "").strip() and self.doc_image is None:
            raise ConfigError("a training pair needs a candidate text or a candidate image")
        if self.label not in (0, 1) or isinstance(self.label, bool):
            raise ConfigError(f"label must be 0 or 1, got {self.label!r}")

    @property
    def has_image(self) -> bool:
        return self.query_image is not None or self.doc_image is not None

    @property
    def query_key(self) -> tuple[str | None, str | None]:
        return (self.query_text, self.query_image)


def _label(value: object, where: str) -> int:
    if value is True or value is False:
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    raise ConfigError(f"{where}: 'label' must be 0, 1, true or false, got {value!r}")


def _optional_text(row: dict, key: str, where: str) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    return " ".join(value.split()) or None


def _image(root: Path, row: dict, key: str, where: str) -> str | None:
    value = _optional_text(row, key, where)
    if value is None:
        return None
    path = Path(value) if Path(value).is_absolute() else root / value
    if not path.is_file():
        raise MediaError(f"{where}: {key} {value!r} not found")
    return str(path.resolve())


def read_pairs(path: str | Path) -> list[Example]:
    """The pairs of a JSONL file (see the module docstring); any bad line is a one-line error."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise ConfigError(f"{source}: no such pairs file")
    examples = []
    for where, row in read_jsonl(source):
        unknown = sorted(set(row) - set(PAIR_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; a pair has {', '.join(PAIR_KEYS)}")
        if "label" not in row:
            raise ConfigError(f"{where}: 'label' is missing")
        query, candidate = _optional_text(row, "query", where), _optional_text(row, "candidate", where)
        query_image, doc_image = _image(source.parent, row, "query_image", where), _image(source.parent, row, "candidate_image", where)
        group = row.get("group")
        if group is not None and (isinstance(group, bool) or not isinstance(group, (str, int)) or not str(group).strip()):
            raise ConfigError(f"{where}: 'group' must be a non-empty string or an integer")
        try:
            examples.append(Example(query, query_image, candidate, doc_image, _label(row["label"], where),
                                    str(group) if group is not None else str(query_image or query)))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    if not examples:
        raise ConfigError(f"{source}: no pairs (the file is empty)")
    return examples


def split_examples(examples: Sequence[Example], held_out_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held-out) pairs, split by ``group`` with :func:`~mm_rag_components.datasets.task.split_groups`."""
    if not examples:
        raise ConfigError("no training pairs")
    held, _ = split_groups([e.group for e in examples], held_out_fraction, seed)
    train = [e for e in examples if e.group not in held]
    held_out = [e for e in examples if e.group in held]
    check_labels(train, "training")
    return train, held_out


def check_labels(examples: Sequence[Example], what: str) -> None:
    """Refuse pairs with a single label (nothing to learn or calibrate)."""
    if not examples:
        raise ConfigError(f"the {what} pairs are empty")
    labels = {e.label for e in examples}
    if labels != {0, 1}:
        raise ConfigError(f"the {what} pairs are all label {labels.pop()}; they need relevant (1) and irrelevant (0) pairs")


def by_query(examples: Iterable[Example]) -> dict[tuple[str | None, str | None], list[Example]]:
    """Pairs grouped by query (text, image), in first-seen order."""
    out: dict[tuple[str | None, str | None], list[Example]] = {}
    for e in examples:
        out.setdefault(e.query_key, []).append(e)
    return out


def fingerprint(examples: Sequence[Example]) -> str:
    """A short hash of the pairs (resuming refuses a different data set)."""
    digest = hashlib.sha256()
    for e in examples:
        digest.update(json.dumps(asdict(e), sort_keys=True).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


def write_pairs(examples: Iterable[Example], path: str | Path) -> Path:
    """Write pairs as the JSONL :func:`read_pairs` reads (image paths absolute)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as out:
        for e in examples:
            row = {"query": e.query_text, "query_image": e.query_image, "candidate": e.doc_text,
                   "candidate_image": e.doc_image, "label": e.label, "group": e.group}
            out.write(json.dumps({k: v for k, v in row.items() if v is not None}) + "\n")
    return target


__all__ = ["Example", "by_query", "check_labels", "fingerprint", "read_pairs", "split_examples", "write_pairs"]
