"""The web chat end to end in a real headless Chromium: ask, upload an image, see the streamed
answer and its sources; while the model is busy, see your place in line, and a clear message
when the server refuses a question (HTTP 503).

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Outside CI a
machine without them reports the skip with its reason in the test summary; in CI (``CI`` set) a
missing browser fails. ``MMRAG_SCREENSHOT=path.png`` saves the page (the README's screenshot).
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
from test_app_frontends import ColourScorer, Streamer

from mm_rag_components import MultimodalIndex
from mm_rag_components.answer import MultimodalAnswerer
from mm_rag_components.app.pipeline import QAPipeline
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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from mm_rag_components.app.web import create_app
    from mm_rag_components.testing import write_sample_folder
    from fake_models import ColourShapeEmbedder

    root = tmp_path_factory.mktemp("browser")
    folder = write_sample_folder(root / "data")
    index = MultimodalIndex(root / "db", image_embedder=ColourShapeEmbedder())
    index.ingest_folder(folder)
    pipeline = QAPipeline(
        index, image_top_k=4, text_top_k=1, reranker=PointwiseRanker(ColourScorer()),
        relevance_filter=FilterPolicy(score_key="rerank_score", threshold=0.5, min_keep=1),
        answerer=MultimodalAnswerer(Streamer()),
    )
    with served(create_app(pipeline, note="demo: fake models")) as url:
        yield url + "/", folder


@pytest.fixture
def browser():
    _browser_or_reason()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
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


def test_ask_upload_and_see_the_answer_and_its_sources(server, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    url, folder = server
    browser.get(url)
    assert "demo: fake models" in browser.find_element(By.ID, "note").text
    browser.find_element(By.ID, "question").send_keys("which one is red")
    browser.find_element(By.ID, "image").send_keys(str(folder / "red_square.png"))
    browser.find_element(By.ID, "send").click()
    turn = WebDriverWait(browser, 30).until(ready.presence_of_element_located((By.CSS_SELECTOR, ".turn[data-done='true']")))
    assert turn.find_element(By.CSS_SELECTOR, ".you").text == "You: which one is red + image"
    assert turn.find_element(By.CSS_SELECTOR, ".answer").text == "The red one is [1]."
    sources = turn.find_elements(By.CSS_SELECTOR, ".sources .source")
    assert sources and "cited" in sources[0].get_attribute("class")
    assert "red" in sources[0].text and "rerank 0.982" in sources[0].text
    thumbnail = sources[0].find_element(By.TAG_NAME, "img")
    WebDriverWait(browser, 10).until(lambda _: browser.execute_script("return arguments[0].naturalWidth", thumbnail) > 0)
    assert "dropped: below_threshold" in turn.find_element(By.CSS_SELECTOR, ".dropped").text
    shot = os.environ.get("MMRAG_SCREENSHOT")
    if shot:
        Path(shot).parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(shot)


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
    answer = lambda: browser.find_element(By.CSS_SELECTOR, ".turn .answer")  # noqa: E731
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
    WebDriverWait(browser, 20).until(lambda _: "The server is busy" in browser.find_element(By.CSS_SELECTOR, ".turn .answer").text)
    assert re.search(r"ask again in \d+ s", browser.find_element(By.CSS_SELECTOR, ".turn .answer").text)
    writer.gate.set()
    for thread in held:
        thread.join(30)
