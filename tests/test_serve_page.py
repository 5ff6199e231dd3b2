"""The web page of cxrzoo serve in a real headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium): an uploaded radiograph shows, its findings chart and Grad-CAM overlay appear,
and an image the model calls out of distribution shows the banner. Screenshots are saved under
the test's tmp_path (and to $CXRZOO_PAGE_SCREENSHOT when set, for the README)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")
pytest.importorskip("selenium", reason="selenium is not installed")

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from cxrzoo import store
from cxrzoo.inference import predict_stream
from cxrzoo.serve.app import create_app
from cxrzoo.serve.models import ServedModel, ServeOptions
from cxrzoo.testing import tiny_model

pytestmark = pytest.mark.xdist_group("serve")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
NO_BROWSER = (
    "headless browser test: chromium and chromedriver are not installed "
    "(apt-get install chromium chromium-driver; .ci/run does it)"
)

MODEL = "chest_xray_attention"
#: Served too; the fake predictor says its images are out of distribution.
OOD_MODEL = "ood_model"


def fake_details(model, images, **kwargs):
    """predict_stream, with the out-of-distribution details a gated model would add."""
    outside = model.metadata.get("name") == OOD_MODEL
    for pred in predict_stream(model, images, **kwargs):
        details = (
            {"ood_score": 9.5, "in_distribution": False}
            if outside
            else {"ood_score": 0.4, "in_distribution": True}
        )
        yield types.SimpleNamespace(
            path=pred.path, probabilities=pred.probabilities, error=pred.error, details=details
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRZOO_HOME", str(home))
        for i, name in enumerate((MODEL, OOD_MODEL)):
            model = tiny_model(MODEL, seed=i)
            model.set_thresholds([0.3, 0.7] * 7)
            store.save(model, name)
        app = create_app([ServedModel(MODEL), ServedModel(OOD_MODEL)], ServeOptions(), predict=fake_details)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not srv.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
        srv.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip(NO_BROWSER)
    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def radiograph(tmp_path) -> Path:
    img = np.full((256, 224), 30, np.uint8)
    cv2.ellipse(img, (70, 128), (40, 90), 0, 0, 360, 120, -1)
    cv2.ellipse(img, (154, 128), (40, 90), 0, 0, 360, 120, -1)
    cv2.circle(img, (120, 170), 28, 220, -1)
    path = tmp_path / "chest.png"
    assert cv2.imwrite(str(path), cv2.GaussianBlur(img, (9, 9), 0))
    return path


def upload(browser, base: str, image: Path, model: str) -> None:
    browser.get(base + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 2)
    Select(browser.find_element(By.ID, "model")).select_by_value(model)
    field = browser.find_element(By.ID, "file")
    browser.execute_script("arguments[0].hidden = false;", field)
    field.send_keys(str(image))
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", (
        browser.find_element(By.ID, "status").text
    )
    wait.until(lambda d: d.find_element(By.ID, "overlay").get_attribute("data-ready") == "true")


def test_upload_shows_the_image_chart_overlay_and_card(server, browser, radiograph, tmp_path):
    upload(browser, server, radiograph, MODEL)
    assert browser.find_element(By.ID, "preview").is_displayed()
    rows = browser.find_elements(By.CSS_SELECTOR, "#chart .row")
    assert len(rows) == 14
    values = [float(r.find_element(By.CLASS_NAME, "value").text) for r in rows]
    assert values == sorted(values, reverse=True)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart .threshold")) == 14
    overlay = browser.find_element(By.ID, "overlay")
    assert overlay.is_displayed() and overlay.get_attribute("data-finding") == rows[0].get_attribute(
        "data-finding"
    )
    # Choosing another finding redraws the overlay for it.
    rows[-1].click()
    last = rows[-1].get_attribute("data-finding")
    WebDriverWait(browser, 60).until(
        lambda d: (
            d.find_element(By.ID, "overlay").get_attribute("data-finding") == last
            and d.find_element(By.ID, "overlay").get_attribute("data-ready") == "true"
        )
    )
    assert "cxrzoo" in browser.find_element(By.ID, "card").get_attribute("textContent")
    assert not browser.find_element(By.ID, "ood-banner").is_displayed()
    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("CXRZOO_PAGE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["CXRZOO_PAGE_SCREENSHOT"])


def test_an_out_of_distribution_image_shows_the_banner(server, browser, radiograph, tmp_path):
    upload(browser, server, radiograph, OOD_MODEL)
    banner = browser.find_element(By.ID, "ood-banner")
    assert banner.is_displayed()
    assert "Out of distribution" in banner.text and "9.50" in banner.text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart .row")) == 14
    assert browser.save_screenshot(str(tmp_path / "ood.png"))


DROP = """
const [b64, name] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, { type: "application/dicom" }));
document.getElementById("drop").dispatchEvent(
  new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true })
);
"""


def test_a_dicom_file_dropped_on_the_page_is_shown_and_predicted(server, browser, tmp_path):
    import base64

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, generate_uid()
    ds.Modality = "DX"
    pixels = np.tile(np.linspace(0, 4095, 96, dtype=np.uint16), (120, 1))
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    path = tmp_path / "scan.dcm"
    ds.save_as(path, enforce_file_format=True)

    browser.get(server + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 2)
    Select(browser.find_element(By.ID, "model")).select_by_value(MODEL)
    browser.execute_script(DROP, base64.b64encode(path.read_bytes()).decode(), "scan.dcm")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done"
    preview = browser.find_element(By.ID, "preview")
    # The browser cannot show DICOM: the page shows the server's decoding of it (120 x 96).
    assert browser.execute_script(
        "return [arguments[0].naturalHeight, arguments[0].naturalWidth]", preview
    ) == [
        120,
        96,
    ]
    assert "scan.dcm: positive findings" in browser.find_element(By.ID, "status").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart .row")) == 14
    wait.until(lambda d: d.find_element(By.ID, "overlay").get_attribute("data-ready") == "true")
