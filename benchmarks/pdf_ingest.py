"""PDF ingest: pages/s against a bare pypdfium2 loop, and peak memory at 200 vs 2,000 pages.

* throughput: pages/s through ``MultimodalIndex.ingest_paths`` (open, render at 100 DPI, hash,
  store the page JPEG, extract and chunk the text layer, embed page images and texts, upsert into
  embedded Chroma) vs a bare loop that renders and extracts every page with pypdfium2 at the same
  DPI and feeds the same embedder the same images and texts in the same batches — in the same
  run. Ratio = bare time / our time (target >= 0.9). Model: CLIP ViT-B/32 shapes, random weights.
* memory: peak RSS of a fresh subprocess ingesting a 200-page PDF, then one ingesting a
  2,000-page PDF (tiny CLIP: the model's share is the same in both, what could grow is the
  pipeline): the process peak (``ru_maxrss``) and the peak during ingest alone (Linux: the peak
  is reset with ``/proc/self/clear_refs`` just before, read from ``VmHWM`` just after).
  Ratio = 2,000 / 200 of the ingest peak (target 1.00 +- 0.15: memory does not grow with pages).

Pages show one photo (the COCO sample in ``shared/`` when present, else drawn shapes) and a
paragraph short enough to be one chunk. Usage:
    python benchmarks/pdf_ingest.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import write_figures  # noqa: E402

DPI = 100.0
BATCH = 32


def write_document(path: Path, pages: int) -> Path:
    """A PDF of ``pages`` pages, each a photo (cycled from a small set) and a one-chunk paragraph."""
    from mm_rag_components.testing import coco_sample, write_pdf
    from mm_rag_components.testing.data import COLOURS, SHAPES, draw_shape
    from mm_rag_components.testing.pdfs import DISTRACTORS

    coco = coco_sample()
    photos = [(str(c.path), c.captions[0]) for c in coco[:12]] if coco else [
        (draw_shape(c, s, 200), f"a {c} {s}") for c in COLOURS for s in SHAPES]
    content = [(photos[i % len(photos)][0], f"{photos[i % len(photos)][1]}. {DISTRACTORS[i % len(DISTRACTORS)]} Page {i + 1}.")
               for i in range(pages)]
    return write_pdf(path, content, title=f"{pages} pages")


def bare_loop(pdf: Path, embedder) -> int:
    """Render and extract every page with pypdfium2, embedding images and texts in batches."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(pdf))
    images, texts, done = [], [], 0
    for i in range(len(doc)):
        page = doc[i]
        bitmap = page.render(scale=DPI / 72, rev_byteorder=True, may_draw_forms=False)
        images.append(bitmap.to_pil())
        textpage = page.get_textpage()
        texts.append(textpage.get_text_bounded())
        textpage.close()
        page.close()
        if len(images) == BATCH or i == len(doc) - 1:
            embedder.embed_images(images, batch_size=BATCH, show_progress=False)
            embedder.embed_texts(texts, batch_size=BATCH, show_progress=False)
            done += len(images)
            images, texts = [], []
    doc.close()
    return done


def bench_throughput(tmp: Path, pages: int, repeats: int) -> dict:
    from mm_rag_components import ClipEmbedder, MultimodalIndex
    from mm_rag_components.testing import build_clip_vit_b32_random

    embedder = ClipEmbedder(build_clip_vit_b32_random(tmp / "clip-vit-b32-random"), device="cpu", batch_size=BATCH)
    embedder.warm_up()
    pdf = write_document(tmp / f"doc-{pages}.pdf", pages)
    warm = write_document(tmp / "warm.pdf", 4)  # warm both paths' code (imports, the text splitter's first load)
    bare_loop(warm, embedder)
    MultimodalIndex(tmp / "db-warm" / "chroma", image_embedder=embedder, batch_size=BATCH, page_dpi=DPI).ingest_paths([warm], show_progress=False)
    bare_times, our_times = [], []
    for r in range(repeats):
        start = time.perf_counter()
        assert bare_loop(pdf, embedder) == pages
        bare_times.append(time.perf_counter() - start)
        index = MultimodalIndex(tmp / f"db-{r}" / "chroma", image_embedder=embedder, batch_size=BATCH, page_dpi=DPI)
        start = time.perf_counter()
        report = index.ingest_paths([pdf], show_progress=False)
        our_times.append(time.perf_counter() - start)
        assert report.added == 1 and index.count()["image"] == pages, report.summary()
        assert index.count()["text"] == pages, "a paragraph must stay one chunk for a like-for-like comparison"
    bare_s, our_s = min(bare_times), min(our_times)
    return {"pages": pages, "dpi": DPI, "bare_pages_per_s": pages / bare_s, "ours_pages_per_s": pages / our_s,
            "throughput_ratio": bare_s / our_s}


def child(pdf: str, db: str) -> None:
    """One measured run (a subprocess): ingest ``pdf`` into a new index at ``db``, print figures."""
    from mm_rag_components import ClipEmbedder, MultimodalIndex
    from mm_rag_components.testing import build_tiny_clip

    embedder = ClipEmbedder(build_tiny_clip(Path(db) / "tiny-clip"), device="cpu", batch_size=BATCH)
    index = MultimodalIndex(Path(db) / "chroma", image_embedder=embedder, batch_size=BATCH, page_dpi=DPI)
    index.ingest_paths([write_document(Path(db) / "warm.pdf", 2)], show_progress=False)  # load everything once
    before_mb = _status_mb("VmRSS")
    reset = _reset_peak()
    start = time.perf_counter()
    report = index.ingest_paths([pdf], show_progress=False)
    seconds = time.perf_counter() - start
    ingest_peak_mb = _status_mb("VmHWM") if reset else None
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"pages": index.count()["image"] - 2, "seconds": seconds, "peak_rss_mb": peak_kb / 1024,
                      "rss_before_mb": before_mb, "ingest_peak_rss_mb": ingest_peak_mb, "ok": report.ok}))


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux 4.0+); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_mb(key: str) -> float | None:
    """A ``/proc/self/status`` memory figure in MiB (``None`` off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def bench_memory(tmp: Path, sizes: tuple[int, int]) -> dict:
    out = {}
    for pages in sizes:
        pdf = write_document(tmp / f"rss-{pages}.pdf", pages)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run([sys.executable, __file__, "--child", str(pdf), str(tmp / f"rss-db-{pages}")],
                              capture_output=True, text=True, env=env, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        assert figures["pages"] == pages and figures["ok"], figures
        out[pages] = figures
        ingest = figures["ingest_peak_rss_mb"]
        print(f"  {pages:>5} pages: peak RSS {figures['peak_rss_mb']:.0f} MiB (process), "
              f"{'n/a' if ingest is None else f'{ingest:.0f}'} MiB during ingest (from {figures['rss_before_mb']:.0f} MiB), "
              f"{pages / figures['seconds']:.1f} pages/s (tiny CLIP)", flush=True)
    small, large = (out[n] for n in sizes)
    key = "ingest_peak_rss_mb" if small["ingest_peak_rss_mb"] and large["ingest_peak_rss_mb"] else "peak_rss_mb"
    return {"runs": {str(k): v for k, v in out.items()}, "rss_ratio": large[key] / small[key], "rss_measure": key}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pages (60 for throughput, 50 vs 500 for memory)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--child", nargs=2, metavar=("PDF", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pages = 60 if args.quick else 200
        throughput = bench_throughput(tmp, pages, repeats=1 if args.quick else 3)
        print(f"throughput: {pages} pages at {DPI:g} DPI; bare pypdfium2 loop {throughput['bare_pages_per_s']:.1f} pages/s, "
              f"MultimodalIndex {throughput['ours_pages_per_s']:.1f} pages/s -> ratio {throughput['throughput_ratio']:.2f} (target >= 0.9)",
              flush=True)
        sizes = (50, 500) if args.quick else (200, 2000)
        print(f"memory: peak RSS of one process per run, {sizes[0]} vs {sizes[1]} pages", flush=True)
        memory = bench_memory(tmp, sizes)
        print(f"memory: ratio {memory['rss_ratio']:.2f} (target 1.00 +- 0.15)")
    figures = {"throughput_ratio": throughput["throughput_ratio"], "rss_ratio": memory["rss_ratio"], "throughput": throughput,
               "memory": memory, "model": "CLIP ViT-B/32 shapes, random weights (throughput); tiny CLIP (memory)",
               "device": "cpu", "cpus": os.cpu_count()}
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
