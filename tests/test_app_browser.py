"""The web chat end to end in a real headless Chromium: ask with an uploaded image and see it as a
thumbnail, the streamed answer rendered as safe Markdown (raw HTML in an answer stays text),
citations linked to their source cards, document pages with their page numbers and thumbnails;
while the model is busy, see your place in line, and a clear message when the server refuses a
question (HTTP 503). The page runs under its Content-Security-Policy: a violation fails the test.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Outside CI a
machine without them reports the skip with its reason in the test summary; in CI (``CI`` set) a
missing browser fails. The conversation test saves a screenshot under pytest's tmp path and
prints where; ``MMRAG_SCREENSHOT=path.png`` saves it there too (the README's screenshot).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from app_server import served
from test_app_frontends import ColourScorer

from mm_rag_components import MultimodalIndex
from mm_rag_components.answer import MultimodalAnswerer
from mm_rag_components.app.pipeline import QAPipeline, QATurn
from mm_rag_components.filters import FilterPolicy
from mm_rag_components.rerank import PointwiseRanker

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _browser_or_reason() -> None:
    if CHROMIUM and CHROMEDRIVER:
        return
    reason = "no Chromium/ChromeDriver on this machine: install Debian's chromium and chromium-driver (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


MARKDOWN = ("Here is **bold**, *italics*, `code` and a [link](https://example.org/docs).\n\n- first point [1]\n- second point\n\n"
            "1. one\n2. two\n\nNot links: [click](javascript:alert(1)) [bad](javascript:void) and raw HTML: "
            "<img src=x onerror=\"document.title='pwned'\"> <b>not bold</b>")
SLOW = "Streaming, word by word, so that you can watch it arrive [1]."


class ScriptedWriter:
    """Streams an answer chosen by the question; "slowly" holds everything after its first word
    until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def generate(self, turns):
        return "".join(self.stream(turns))

    def stream(self, turns):
        question = turns[-1].text
        if "markdown please" in question:
            yield from (MARKDOWN[:40], MARKDOWN[40:])
        elif "the report" in question:
            yield "The report covers it on page 7 [1] and on page 9 [2]."
        elif "slowly" in question:
            first, rest = SLOW.split(" ", 1)
            yield first + " "
            if not self.release.wait(30):
                raise TimeoutError("never released")
            yield rest
        else:
            yield from ("The red one ", "is [1].")


class DocumentPipeline(QAPipeline):
    """Questions about "the report" find two pages of a PDF (mixed image+text candidates, as PDF
    ingest makes them); everything else is searched in the index."""

    def __init__(self, *args, pages: list, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pages = pages

    def search(self, question):
        if "the report" not in (question.text or ""):
            return super().search(question)
        return QATurn(question, list(self.pages), list(self.pages), list(self.pages))


def report_pages(folder: Path) -> list:
    """Two pages of "report.pdf": their page images (here: sample pictures) and their text."""
    import hashlib

    from mm_rag_components.types import MIXED, Candidate

    pages = []
    for number, picture in ((7, "green_circle.png"), (9, "blue_square.png")):
        image = folder / picture
        metadata = {"source": str(folder / "report.pdf"), "file_name": "report.pdf", "title": "Annual report 2024", "page": number,
                    "page_count": 12, "page_id": f"report-{number}", "sha256": hashlib.sha256(image.read_bytes()).hexdigest(),
                    "retrieval_score": 0.5}
        pages.append(Candidate(f"report-{number}", MIXED, text=f"Page {number} of the report: results and figures.",
                               image_path=str(image), score=0.5, metadata=metadata))
    return pages


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from mm_rag_components.app.web import create_app
    from mm_rag_components.testing import write_sample_folder
    from fake_models import ColourShapeEmbedder

    root = tmp_path_factory.mktemp("browser")
    folder = write_sample_folder(root / "data")
    index = MultimodalIndex(root / "db", image_embedder=ColourShapeEmbedder())
    index.ingest_folder(folder)
    writer = ScriptedWriter()
    pipeline = DocumentPipeline(
        index, image_top_k=4, text_top_k=1, reranker=PointwiseRanker(ColourScorer()),
        relevance_filter=FilterPolicy(score_key="rerank_score", threshold=0.5, min_keep=1),
        answerer=MultimodalAnswerer(writer), pages=report_pages(folder),
    )
    with served(create_app(pipeline, note="demo: fake models")) as url:
        yield url + "/", folder, writer


@pytest.fixture
def browser():
    _browser_or_reason()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    profile = tempfile.mkdtemp(prefix="mm-rag-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _ask(browser, question: str, image: Path | None = None):
    """Ask on the page and return the new turn once it is done."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    before = len(browser.find_elements(By.CSS_SELECTOR, ".turn"))
    browser.find_element(By.ID, "question").send_keys(question)
    if image is not None:
        browser.find_element(By.ID, "image").send_keys(str(image))
        WebDriverWait(browser, 10).until(lambda _: browser.find_element(By.ID, "preview").is_displayed())
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 30).until(lambda _: len(browser.find_elements(By.CSS_SELECTOR, ".turn[data-done='true']")) > before)
    return browser.find_elements(By.CSS_SELECTOR, ".turn")[-1]


def _loaded(browser, image) -> bool:
    return browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image)


def _problems(browser) -> list[str]:
    """Content-Security-Policy violations and uncaught script errors the page logged."""
    return [entry["message"] for entry in browser.get_log("browser")
            if "Content Security Policy" in entry["message"] or "Uncaught" in entry["message"]]


def test_a_conversation_with_images_markdown_citations_and_document_pages(server, browser, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, folder, writer = server
    browser.get(url)
    assert browser.find_element(By.ID, "note").text == "demo: fake models"
    assert browser.page_source.count("demo: fake models") == 1  # the banner shows once

    # 1. a question with an image: the image shows as a thumbnail, the citation links to its source
    turn = _ask(browser, "which one is red", folder / "red_square.png")
    assert turn.find_element(By.CSS_SELECTOR, ".you .question").text == "which one is red"
    assert "+ image" not in turn.text
    asked = turn.find_element(By.CSS_SELECTOR, ".you img.query-image")
    WebDriverWait(browser, 10).until(lambda _: _loaded(browser, asked))
    answer = turn.find_element(By.CSS_SELECTOR, ".answer")
    assert answer.text == "The red one is [1]."
    sources = turn.find_elements(By.CSS_SELECTOR, ".sources .source")
    assert sources and "cited" in sources[0].get_attribute("class")
    assert "red" in sources[0].text and "rerank 0.982" in sources[0].text
    thumbnail = sources[0].find_element(By.CSS_SELECTOR, ".thumb img")
    WebDriverWait(browser, 10).until(lambda _: _loaded(browser, thumbnail))
    citation = answer.find_element(By.CSS_SELECTOR, "a.cite")
    assert citation.text == "[1]" and citation.get_attribute("href").endswith("#" + sources[0].get_attribute("id"))
    citation.click()
    WebDriverWait(browser, 5).until(lambda _: "highlight" in sources[0].get_attribute("class"))
    turn.find_element(By.CSS_SELECTOR, ".dropped-box summary").click()
    assert "dropped: below_threshold" in turn.find_element(By.CSS_SELECTOR, ".dropped").text

    # 2. Markdown is rendered from a safe subset; raw HTML in an answer is shown as text
    title = browser.title
    turn = _ask(browser, "markdown please")
    answer = turn.find_element(By.CSS_SELECTOR, ".answer")
    assert answer.find_element(By.TAG_NAME, "strong").text == "bold" and answer.find_element(By.TAG_NAME, "em").text == "italics"
    assert answer.find_element(By.TAG_NAME, "code").text == "code"
    assert [li.text for li in answer.find_elements(By.CSS_SELECTOR, "ul li")] == ["first point [1]", "second point"]
    assert [li.text for li in answer.find_elements(By.CSS_SELECTOR, "ol li")] == ["one", "two"]
    links = {a.text: a.get_attribute("href") for a in answer.find_elements(By.CSS_SELECTOR, "a:not(.cite)")}
    assert links == {"link": "https://example.org/docs"}
    assert answer.find_elements(By.CSS_SELECTOR, "img, b, script, iframe") == []
    assert "<img src=x onerror=\"document.title='pwned'\"> <b>not bold</b>" in answer.text
    assert "[click](javascript:alert(1)) [bad](javascript:void)" in answer.text
    assert browser.title == title and browser.execute_script("return document.title") != "pwned"

    # 3. a long answer visibly streams
    browser.find_element(By.ID, "question").send_keys("answer slowly")
    browser.find_element(By.ID, "send").click()
    live = lambda: browser.find_elements(By.CSS_SELECTOR, ".turn")[-1].find_element(By.CSS_SELECTOR, ".answer")  # noqa: E731
    WebDriverWait(browser, 20).until(lambda _: live().text.startswith("Streaming,"))
    assert "streaming" in live().get_attribute("class") and "arrive" not in live().text
    writer.release.set()
    WebDriverWait(browser, 20).until(lambda _: browser.find_elements(By.CSS_SELECTOR, ".turn")[-1].get_attribute("data-done"))
    assert live().text == SLOW and "streaming" not in live().get_attribute("class")

    # 4. document pages: the document's name, the page number and the page's thumbnail, which opens the page
    turn = _ask(browser, "what does the report say")
    cards = turn.find_elements(By.CSS_SELECTOR, ".sources .source")
    assert [c.find_element(By.CSS_SELECTOR, ".name").text for c in cards] == ["[1]report.pdf, p. 7", "[2]report.pdf, p. 9"]
    assert "Annual report 2024 · 12 pages" in cards[0].text and "Page 7 of the report" in cards[0].text
    page = cards[0].find_element(By.CSS_SELECTOR, ".thumb img")
    WebDriverWait(browser, 10).until(lambda _: _loaded(browser, page))
    assert len(turn.find_elements(By.CSS_SELECTOR, ".answer a.cite")) == 2
    home = browser.current_window_handle
    cards[0].find_element(By.CSS_SELECTOR, ".thumb").click()
    WebDriverWait(browser, 10).until(lambda _: len(browser.window_handles) == 2)
    browser.switch_to.window(next(h for h in browser.window_handles if h != home))
    WebDriverWait(browser, 10).until(lambda _: browser.execute_script("return document.contentType") == "image/png")
    browser.close()
    browser.switch_to.window(home)

    assert _problems(browser) == []
    shot = tmp_path / "web-chat.png"
    browser.set_window_size(1200, 2250)  # the whole conversation
    browser.execute_script("document.getElementById('turns').scrollTop = 0")
    browser.save_screenshot(str(shot))
    print(f"\nscreenshot of the web chat: {shot}")
    if os.environ.get("MMRAG_SCREENSHOT"):
        Path(os.environ["MMRAG_SCREENSHOT"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, os.environ["MMRAG_SCREENSHOT"])


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """A web chat over a local (one question at a time) answerer that waits for its gate; 1 in line at most."""
    from fake_models import ColourShapeEmbedder
    from test_app_concurrency import GatedWriter

    from mm_rag_components.app.web import create_app
    from mm_rag_components.testing import write_sample_folder

    root = tmp_path_factory.mktemp("browser-queue")
    index = MultimodalIndex(root / "db", image_embedder=ColourShapeEmbedder())
    index.ingest_folder(write_sample_folder(root / "data"))
    writer = GatedWriter()
    pipeline = QAPipeline(index, image_top_k=2, modalities=["image"], answerer=MultimodalAnswerer(writer))
    with served(create_app(pipeline, queue=1)) as url:
        yield url, writer


def _ask_in_background(url: str, question: str) -> threading.Thread:
    import httpx

    thread = threading.Thread(target=lambda: httpx.post(url + "/api/ask", json={"question": question}, timeout=60), daemon=True)
    thread.start()
    return thread


def _wait_for(url: str, key: str, value: int, hang_guard: float = 120.0) -> None:
    """Poll the health route until ``key`` is ``value`` (the limit is a hang guard, not a timing check)."""
    import httpx

    deadline = time.monotonic() + hang_guard
    while httpx.get(url + "/api/health").json()[key] != value:
        if time.monotonic() > deadline:
            raise AssertionError(f"{key} never reached {value}")
        time.sleep(0.02)


def test_a_waiting_user_sees_their_place_in_line_and_a_full_server_says_when_to_come_back(gated, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, writer = gated
    busy = _ask_in_background(url, "red circle")  # takes the one model
    _wait_for(url, "running", 1)
    browser.get(url + "/")
    browser.find_element(By.ID, "question").send_keys("which one is red")
    browser.find_element(By.ID, "send").click()
    answer = lambda: browser.find_elements(By.CSS_SELECTOR, ".turn")[-1].find_element(By.CSS_SELECTOR, ".answer")  # noqa: E731
    WebDriverWait(browser, 20).until(lambda _: "number 1 in line" in answer().text)
    assert "waiting" in answer().get_attribute("class")
    writer.gate.set()
    WebDriverWait(browser, 30).until(lambda _: browser.find_elements(By.CSS_SELECTOR, ".turn[data-done='true']"))
    assert answer().text == "It is red [1]." and "waiting" not in answer().get_attribute("class")
    busy.join(30)

    writer.gate = threading.Event()  # hold the model again, with one user running and one in line
    held = [_ask_in_background(url, "red circle"), None]
    _wait_for(url, "running", 1)
    held[1] = _ask_in_background(url, "blue square")
    _wait_for(url, "waiting", 1)
    browser.find_element(By.ID, "question").send_keys("and green?")
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 20).until(lambda _: "The server is busy" in answer().text)
    assert re.search(r"ask again in \d+ s", answer().text)
    writer.gate.set()
    for thread in held:
        thread.join(30)
