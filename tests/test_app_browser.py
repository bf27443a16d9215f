"""The web chat end to end in a real headless Chromium: ask, upload an image, see the streamed
answer and its sources.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Outside CI a
machine without them reports the skip with its reason in the test summary; in CI (``CI`` set) a
missing browser fails. ``MMRAG_SCREENSHOT=path.png`` saves the page (the README's screenshot).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

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
    port = _free_port()
    app = create_app(pipeline, note="demo: fake models")
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if uv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", folder
    uv.should_exit = True
    thread.join(10)


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
