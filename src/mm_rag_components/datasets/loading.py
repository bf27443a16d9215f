"""Loading a data set folder: captioned images (three tasks), your own qrels, or pages of PDFs
(see :mod:`~mm_rag_components.datasets.task` for the layouts)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .files import image_path, read_jsonl
from .pages import PAGES_FILE, pages_task
from .qrels import qrels_task
from .task import CAPTION_TASKS, PAGES_TASK, QRELS_TASK, TASKS, EvalDoc, EvalQuery, EvalTask


def load_dataset(path: str | Path, task: str | None = None) -> EvalTask:
    """An :class:`EvalTask` from a captioned folder (``task`` one of :data:`CAPTION_TASKS`,
    default ``caption2caption``), a qrels folder (``task`` ``None`` or ``"qrels"``) or a pages
    folder (``task`` ``None`` or ``"pages"``)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{root}: {'is a file, not a folder' if root.exists() else 'no such folder'}")
    if task is not None and task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if (root / PAGES_FILE).is_file():
        if task not in (None, PAGES_TASK):
            raise ConfigError(f"{root} is a pages folder ({PAGES_FILE}); its task is {PAGES_TASK}")
        return pages_task(root)
    if task == PAGES_TASK:
        raise ConfigError(f"{root}: --task {PAGES_TASK} needs {PAGES_FILE} beside the PDFs")
    if (root / "captions.jsonl").is_file():
        if task == QRELS_TASK:
            raise ConfigError(f"{root} is a captioned folder (captions.jsonl); its tasks are {', '.join(CAPTION_TASKS)}")
        return captioned_task(root, task or "caption2caption")
    if (root / "queries.jsonl").is_file() or (root / "corpus.jsonl").is_file():
        if task not in (None, QRELS_TASK):
            raise ConfigError(f"{root} is a qrels folder (queries.jsonl, corpus.jsonl, qrels); --task {task} needs captions.jsonl")
        return qrels_task(root)
    raise ConfigError(
        f"{root}: not an evaluation folder; expected captions.jsonl (captioned images) or "
        f"queries.jsonl + corpus.jsonl + qrels.jsonl/qrels.txt (your own qrels) or {PAGES_FILE} (pages of PDFs)"
    )


def captioned_task(folder: str | Path, task: str = "caption2caption") -> EvalTask:
    """One of the three tasks of a captioned folder (see the module docstring)."""
    if task not in CAPTION_TASKS:
        raise ConfigError(f"unknown captioned task {task!r}; choose one of {', '.join(CAPTION_TASKS)}")
    root = Path(folder).expanduser()
    source = root / "captions.jsonl"
    images: dict[str, tuple[str, list[str]]] = {}
    for where, row in read_jsonl(source):
        image, captions = row.get("image"), row.get("captions")
        if not isinstance(image, str) or not image.strip():
            raise ConfigError(f"{where}: 'image' must be a path relative to the folder")
        if not isinstance(captions, list) or not all(isinstance(c, str) and c.strip() for c in captions):
            raise ConfigError(f"{where}: 'captions' must be a list of non-empty strings")
        if image in images:
            raise ConfigError(f"{where}: image {image!r} is listed twice")
        images[image] = (image_path(root, image, where), [" ".join(c.split()) for c in captions])
    if not images:
        raise ConfigError(f"{source}: no images listed")
    captions = {f"{image}#{k}": (image, text) for image, (_, texts) in images.items() for k, text in enumerate(texts)}
    notes: list[str] = []
    if task == "text2image":
        corpus = [EvalDoc(image, image=path, group=image) for image, (path, _) in images.items()]
        queries = [EvalQuery(cid, text=text, group=image) for cid, (image, text) in captions.items()]
        qrels = {cid: {image: 1} for cid, (image, _) in captions.items()}
    else:
        corpus = [EvalDoc(cid, text=text, group=image) for cid, (image, text) in captions.items()]
        by_image: dict[str, list[str]] = {}
        for cid, (image, _) in captions.items():
            by_image.setdefault(image, []).append(cid)
        if task == "image2text":
            queries = [EvalQuery(image, image=path, group=image) for image, (path, _) in images.items() if by_image.get(image)]
            qrels = {q.id: {cid: 1 for cid in by_image[q.id]} for q in queries}
        else:
            queries = [
                EvalQuery(cid, text=text, group=image, exclude=frozenset({cid}))
                for cid, (image, text) in captions.items() if len(by_image[image]) >= 2
            ]
            qrels = {q.id: {c: 1 for c in by_image[q.group] if c != q.id} for q in queries}
        lonely = sum(1 for image in images if len(by_image.get(image, [])) < (1 if task == "image2text" else 2))
        if lonely:
            notes.append(f"{lonely} image(s) with too few captions serve only as distractors")
    if not queries:
        raise ConfigError(f"{source}: no queries for task {task} (every image needs captions)")
    return EvalTask(root.name, task, queries, corpus, qrels, root=root, notes=notes)


__all__ = ["captioned_task", "load_dataset"]
