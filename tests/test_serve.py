"""cxrzoo serve: every endpoint and error code through FastAPI's test client, the micro-batcher,
a store entry changed on disk, and a real uvicorn process on 127.0.0.1 (token on, DICOM)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
pytest.importorskip("python_multipart")

from fastapi.testclient import TestClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import cxrzoo
from cxrzoo import store
from cxrzoo.inference import predict_proba, predict_stream
from cxrzoo.serve.app import create_app
from cxrzoo.serve.models import Batcher, QueueFull, ServedModel, ServeOptions
from cxrzoo.testing import tiny_model

pytestmark = pytest.mark.xdist_group("serve")

MODEL = "chest_xray_attention"
THRESHOLDS = [0.3, 0.7] * 7


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A tiny calibrated model in a private store, as MODEL and as 'second'."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRZOO_HOME", str(home))
        for i, name in enumerate((MODEL, "second")):
            model = tiny_model(MODEL, seed=i)
            model.set_thresholds(THRESHOLDS)
            store.save(model, name)
        yield home


def radiograph(seed: int = 0, size: tuple[int, int] = (72, 64)) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 120, size, dtype=np.uint8)
    cv2.circle(img, (size[1] // 2, size[0] // 2), 15 + seed, 230, -1)
    return img


def png_bytes(seed: int = 0) -> bytes:
    return cv2.imencode(".png", radiograph(seed))[1].tobytes()


def dicom_bytes(path: Path) -> bytes:
    """A 12-bit DX data set with a window, written by pydicom."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    pixels = (radiograph(3).astype(np.uint16) * 16).astype("<u2")
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def serve(zoo, *names: str, predict=None, **options) -> TestClient:
    models = [ServedModel(n) for n in names or (MODEL,)]
    return TestClient(create_app(models, ServeOptions(**options), predict=predict))


@pytest.fixture
def client(zoo):
    with serve(zoo, MODEL, "second") as c:
        yield c


def expected(zoo, data: bytes, path: Path, name: str = MODEL) -> np.ndarray:
    path.write_bytes(data)
    return predict_proba(cxrzoo.load(name), [path], workers=0)[0]


# -- predict ----------------------------------------------------------------------------------


def test_predict_upload_and_raw_body_give_the_model_s_probabilities(client, zoo, tmp_path):
    data = png_bytes()
    want = expected(zoo, data, tmp_path / "chest.png")
    upload = client.post(f"/v1/models/{MODEL}/predict", files={"file": ("chest.png", data, "image/png")})
    raw = client.post(f"/v1/models/{MODEL}/predict", content=data, headers={"content-type": "image/png"})
    for r in (upload, raw):
        assert r.status_code == 200, r.text
        body = r.json()
        labels = body["labels"]
        assert labels == list(cxrzoo.load(MODEL).labels)
        np.testing.assert_allclose([body["probabilities"][k] for k in labels], want, rtol=0, atol=1e-6)
        assert [body["thresholds"][k] for k in labels] == THRESHOLDS
        assert body["calibrated"] is True
        positive = [k for k, t in zip(labels, THRESHOLDS, strict=True) if body["probabilities"][k] >= t]
        assert sorted(body["positive"]) == sorted(positive)
        # Sorted by probability, most probable first.
        assert [body["probabilities"][k] for k in body["positive"]] == sorted(
            (body["probabilities"][k] for k in body["positive"]), reverse=True
        )
        assert body["config_sha256"] == store.read_config(store.model_path(MODEL))["config_sha256"]
    assert upload.json()["image"] == "chest.png"


def test_jpeg_and_dicom_uploads(client, zoo, tmp_path):
    jpeg = cv2.imencode(".jpg", radiograph(1))[1].tobytes()
    dcm = dicom_bytes(tmp_path / "scan.dcm")
    for name, data, kind in (("chest.jpg", jpeg, "image/jpeg"), ("scan.dcm", dcm, "application/dicom")):
        want = expected(zoo, data, tmp_path / name)
        r = client.post(f"/v1/models/{MODEL}/predict", files={"file": (name, data, kind)})
        assert r.status_code == 200, r.text
        got = [r.json()["probabilities"][k] for k in r.json()["labels"]]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # The raw DICOM body too, and its preview as a PNG.
    r = client.post(f"/v1/models/{MODEL}/predict", content=dcm, headers={"content-type": "application/dicom"})
    assert r.status_code == 200, r.text
    preview = client.post("/v1/preview", content=dcm)
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    shown = cv2.imdecode(np.frombuffer(preview.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert shown.shape == radiograph(3).shape


def test_out_of_distribution_and_uncertainty_fields_are_passed_on(zoo):
    def with_details(model, images, **kwargs):
        for pred in predict_stream(model, images, **kwargs):
            yield types.SimpleNamespace(
                path=pred.path,
                probabilities=pred.probabilities,
                error=pred.error,
                details={
                    "ood_score": np.float32(7.5),
                    "in_distribution": False,
                    "uncertainty": np.full(14, 0.25),
                },
            )

    with serve(zoo, predict=with_details) as c:
        body = c.post(f"/v1/models/{MODEL}/predict", content=png_bytes()).json()
    assert body["in_distribution"] is False
    assert body["ood_score"] == 7.5
    assert body["uncertainty"] == dict.fromkeys(body["labels"], 0.25)
    assert "probabilities" in body


def test_uncertainty_per_finding_when_asked(zoo):
    with serve(zoo, uncertainty=True) as c:
        body = c.post(f"/v1/models/{MODEL}/predict", content=png_bytes()).json()
    assert list(body["uncertainty"]) == body["labels"]
    assert all(0 <= v <= 0.5 for v in body["uncertainty"].values())


# -- explain, models, health, metrics, OpenAPI -------------------------------------------------


def test_explain_returns_an_overlay_png_of_the_chosen_or_top_finding(client, zoo, tmp_path):
    data = png_bytes()
    probs = expected(zoo, data, tmp_path / "chest.png")
    labels = cxrzoo.load(MODEL).labels
    top = client.post(f"/v1/models/{MODEL}/explain", content=data)
    assert top.status_code == 200, top.text
    assert top.headers["x-finding"] == labels[int(np.argmax(probs))]
    chosen = client.post(f"/v1/models/{MODEL}/explain?finding=Edema&method=gradcam%2B%2B", content=data)
    assert chosen.status_code == 200 and chosen.headers["content-type"] == "image/png"
    assert chosen.headers["x-finding"] == "Edema"
    assert float(chosen.headers["x-probability"]) == pytest.approx(probs[labels.index("Edema")], abs=1e-5)
    drawn = cv2.imdecode(np.frombuffer(chosen.content, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.ndim == 3 and min(drawn.shape[:2]) >= 256
    bad = client.post(f"/v1/models/{MODEL}/explain?finding=Edem", content=data)
    assert bad.status_code == 422
    assert bad.json()["error"] == "unknown_finding" and "Did you mean 'Edema'" in bad.json()["detail"]
    assert client.post(f"/v1/models/{MODEL}/explain?method=saliency", content=data).status_code == 422


def test_models_healthz_page_and_openapi(client, zoo):
    models = client.get("/v1/models").json()["models"]
    assert [m["name"] for m in models] == [MODEL, "second"]
    doc = store.read_config(store.model_path(MODEL))
    first = models[0]
    assert first["labels"] == list(cxrzoo.load(MODEL).labels) and first["architecture"] == MODEL
    assert first["config_sha256"] == doc["config_sha256"]
    assert first["weights_sha256"] == doc["weights"]["sha256"]
    assert first["versions"]["torch"] and first["card"] == (store.model_path(MODEL) / "README.md").read_text()
    one = client.get(f"/v1/models/{MODEL}").json()
    assert one["thresholds"]["Cardiomegaly"] == 0.7
    assert "card" not in client.get("/v1/models?card=false").json()["models"][0]
    assert client.get("/healthz").json() == {"status": "ok", "models": {MODEL: "ok", "second": "ok"}}
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/v1/models",
        "/v1/models/{name}/predict",
        "/v1/models/{name}/explain",
        "/healthz",
        "/metrics",
    ):
        assert path in paths
    predict = paths["/v1/models/{name}/predict"]["post"]
    assert {"multipart/form-data", "image/png", "application/dicom"} <= set(predict["requestBody"]["content"])
    assert {"401", "404", "409", "413", "422", "429"} <= set(predict["responses"])


def test_metrics_count_requests_latency_batches_and_errors(client):
    client.post(f"/v1/models/{MODEL}/predict", content=png_bytes())
    client.post(f"/v1/models/{MODEL}/predict", content=b"not an image")
    text = client.get("/metrics").text
    assert (
        'cxrzoo_requests_total{endpoint="/v1/models/{name}/predict",method="POST",status="200"} 1.0' in text
    )
    assert (
        'cxrzoo_requests_total{endpoint="/v1/models/{name}/predict",method="POST",status="422"} 1.0' in text
    )
    assert 'cxrzoo_request_seconds_bucket{endpoint="/v1/models/{name}/predict",le="+Inf"} 2.0' in text
    assert f'cxrzoo_batch_size_count{{model="{MODEL}"}} 1.0' in text
    assert 'cxrzoo_errors_total{kind="undecodable_image"} 1.0' in text
    assert f'cxrzoo_queue_depth{{model="{MODEL}"}} 0.0' in text


# -- errors -----------------------------------------------------------------------------------


def test_every_error_is_json_naming_why(zoo):
    with serve(zoo, max_body_bytes=20_000) as c:
        unknown = c.post("/v1/models/chest_xray_atention/predict", content=png_bytes())
        assert unknown.status_code == 404
        assert "Did you mean 'chest_xray_attention'" in unknown.json()["detail"]
        junk = c.post(f"/v1/models/{MODEL}/predict", files={"file": ("junk.png", b"GIF89a....", "image/png")})
        assert junk.status_code == 422
        assert junk.json() == {
            "error": "undecodable_image",
            "detail": "junk.png: undecodable (not a PNG, JPEG, TIFF or DICOM file)",
        }
        cut = c.post(f"/v1/models/{MODEL}/predict", content=png_bytes()[:60])
        assert cut.status_code == 422 and cut.json()["detail"].startswith("upload: ")
        empty = c.post(f"/v1/models/{MODEL}/predict", content=b"")
        assert empty.status_code == 422 and empty.json()["error"] == "empty_body"
        nofile = c.post(
            f"/v1/models/{MODEL}/predict", data={"note": "x"}, files={"other": ("", b"", "text/plain")}
        )
        assert nofile.status_code == 422
        big = c.post(f"/v1/models/{MODEL}/predict", content=b"\0" * 20_001)
        assert big.status_code == 413 and big.json()["error"] == "too_large"
        streamed = c.post(f"/v1/models/{MODEL}/predict", content=iter([b"\0" * 15_000, b"\0" * 15_000]))
        assert streamed.status_code == 413
        # An image over the pixel limit is refused before it is decoded, and says so.
        os.environ["CXRZOO_MAX_IMAGE_PIXELS"] = "1000"
        try:
            over = c.post(f"/v1/models/{MODEL}/predict", content=png_bytes())
        finally:
            del os.environ["CXRZOO_MAX_IMAGE_PIXELS"]
        assert over.status_code == 422 and "over the limit of 1,000" in over.json()["detail"]


def test_a_failing_model_answers_500_in_json_and_is_counted(zoo):
    def broken(model, images, **kwargs):
        raise RuntimeError("the model fell over")

    app = create_app([ServedModel(MODEL)], ServeOptions(), predict=broken)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post(f"/v1/models/{MODEL}/predict", content=png_bytes())
        assert r.status_code == 500
        assert r.json() == {
            "error": "internal",
            "detail": "internal error: RuntimeError: the model fell over",
        }
        assert 'cxrzoo_errors_total{kind="internal"} 1.0' in c.get("/metrics").text
        # The batching thread survives the failure.
        assert c.post(f"/v1/models/{MODEL}/predict", content=png_bytes()).status_code == 500


def test_token_on_and_off(zoo, tmp_path):
    with serve(zoo, token="s3cret") as c:
        for method, path in (
            ("get", "/v1/models"),
            ("get", "/metrics"),
            ("post", f"/v1/models/{MODEL}/predict"),
        ):
            r = getattr(c, method)(path)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
            assert "Authorization: Bearer" in r.json()["detail"]
        wrong = c.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong bearer token"
        ok = c.post(
            f"/v1/models/{MODEL}/predict", content=png_bytes(), headers={"Authorization": "Bearer s3cret"}
        )
        assert ok.status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200
    with serve(zoo) as c:
        assert c.get("/v1/models").status_code == 200


def test_a_full_queue_answers_429_with_retry_after(zoo):
    release, entered = threading.Event(), threading.Event()

    def blocked(model, images, **kwargs):
        entered.set()
        assert release.wait(30)
        return predict_stream(model, images, **kwargs)

    with serve(zoo, predict=blocked, queue_size=1, max_batch=1) as c:
        batcher = c.app.state.batchers[MODEL]
        answers: list[int] = []

        def post() -> None:
            answers.append(c.post(f"/v1/models/{MODEL}/predict", content=png_bytes()).status_code)

        first = threading.Thread(target=post)
        first.start()
        assert entered.wait(30)  # the first image is in the model
        second = threading.Thread(target=post)
        second.start()
        deadline = time.monotonic() + 30
        while batcher.depth() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = c.post(f"/v1/models/{MODEL}/predict", content=png_bytes())
        release.set()
        first.join(30)
        second.join(30)
    assert refused.status_code == 429 and refused.json()["error"] == "queue_full"
    assert int(refused.headers["retry-after"]) >= 1
    assert answers == [200, 200]


def test_a_store_entry_changed_on_disk_is_refused_until_reloaded(zoo, tmp_path):
    name = "changing"
    first = tiny_model(MODEL, seed=5)
    store.save(first, name)
    data = png_bytes()
    with serve(zoo, name) as c:
        before = c.post(f"/v1/models/{name}/predict", content=data).json()["probabilities"]
        # Only touched: still the same entry.
        config = store.model_path(name) / "config.json"
        os.utime(config, ns=(time.time_ns(), time.time_ns()))
        assert c.post(f"/v1/models/{name}/predict", content=data).status_code == 200
        second = tiny_model(MODEL, seed=6)
        second.set_thresholds(THRESHOLDS)
        store.save(second, name)
        refused = c.post(f"/v1/models/{name}/predict", content=data)
        assert refused.status_code == 409 and refused.json()["error"] == "model_changed"
        assert (
            "config sha256" in refused.json()["detail"]
            and f"/v1/models/{name}/reload" in refused.json()["detail"]
        )
        assert c.get("/healthz").json()["models"][name] == "changed"
        assert c.get(f"/v1/models/{name}").json()["changed_on_disk"]
        reloaded = c.post(f"/v1/models/{name}/reload")
        assert reloaded.status_code == 200
        assert reloaded.json()["config_sha256"] == store.read_config(store.model_path(name))["config_sha256"]
        after = c.post(f"/v1/models/{name}/predict", content=data).json()
        want = expected(zoo, data, tmp_path / "x.png", name)
        np.testing.assert_allclose([after["probabilities"][k] for k in after["labels"]], want, atol=1e-6)
        assert after["probabilities"] != before
    # Weights replaced under an unchanged config.json are caught by their sha256.
    with serve(zoo, name) as c:
        weights = store.model_path(name) / "model.safetensors"
        data_bytes = bytearray(weights.read_bytes())
        data_bytes[-1] ^= 0xFF
        weights.write_bytes(bytes(data_bytes))
        refused = c.post(f"/v1/models/{name}/predict", content=data)
        assert refused.status_code == 409 and "weights file" in refused.json()["detail"]
        assert c.post(f"/v1/models/{name}/reload").status_code == 409  # no longer loadable
    store.save(second, name)
    # --reload-on-change follows the entry instead of refusing it.
    with serve(zoo, name, reload_on_change=True) as c:
        store.save(first, name)
        r = c.post(f"/v1/models/{name}/predict", content=data)
        assert r.status_code == 200 and r.json()["probabilities"] == before


# -- the batcher ------------------------------------------------------------------------------


def test_batches_are_bounded_and_answers_go_to_their_requests(zoo):
    sizes: list[int] = []
    gate = threading.Event()

    def fake(model, images, **kwargs):
        gate.wait(10)
        sizes.append(len(images))
        for img in images:
            yield types.SimpleNamespace(path=None, probabilities=np.array([img.mean()]), error=None)

    served = ServedModel(MODEL)
    batcher = Batcher(served, ServeOptions(max_batch=4, max_wait=0.05, queue_size=32), predict=fake)
    try:
        images = [np.full((4, 4), i, np.uint8) for i in range(10)]
        futures = [batcher.submit(img) for img in images]
        gate.set()
        got = [f.result(10).probabilities[0] for f in futures]
    finally:
        batcher.close()
    assert got == list(range(10))
    assert max(sizes) <= 4 and sum(sizes) == 10 and max(sizes) > 1
    # A queue that is full refuses at once, saying when to come back.
    waiting = threading.Event()
    full = Batcher(
        served, ServeOptions(queue_size=1, max_batch=1), predict=lambda *a, **k: waiting.wait(10) and []
    )
    try:
        taken = full.submit(images[0])
        deadline = time.monotonic() + 10
        while full.depth() and time.monotonic() < deadline:
            time.sleep(0.01)
        queued = full.submit(images[1])
        with pytest.raises(QueueFull) as caught:
            full.submit(images[2])
        assert caught.value.retry_after >= 1
        queued.cancel()
    finally:
        waiting.set()
        full.close()
    assert taken.done()


# -- the command and a real uvicorn process -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30):
    req = urllib.request.Request(
        url, data=data, headers=headers or {}, method="POST" if data is not None else "GET"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_serve_command_runs_uvicorn_on_loopback_with_a_token(zoo, tmp_path):
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    port = free_port()
    env = {**os.environ, "CXRZOO_HOME": str(zoo), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "cxrzoo", "serve", MODEL, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--token-file", str(token), "--stop-after", "120", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if request(f"{base}/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail(
                f"server did not start: {proc.stdout.read() if proc.poll() is not None else 'timeout'}"
            )
        auth = {"Authorization": "Bearer tok-123"}
        assert request(f"{base}/v1/models")[0] == 401
        status, _, body = request(f"{base}/v1/models/{MODEL}/predict", png_bytes(), auth)
        assert status == 200 and list(json.loads(body)["probabilities"]) == json.loads(body)["labels"]
        status, _, body = request(
            f"{base}/v1/models/{MODEL}/predict",
            dicom_bytes(tmp_path / "x.dcm"),
            {**auth, "X-Filename": "x.dcm"},
        )
        assert status == 200 and json.loads(body)["image"] == "x.dcm"
        assert request(f"{base}/v1/models/nope/predict", b"x", auth)[0] == 404
        assert request(f"{base}/v1/models/{MODEL}/predict", b"junk", auth)[0] == 422
        status, headers, body = request(f"{base}/v1/models/{MODEL}/explain", png_bytes(), auth)
        assert status == 200 and headers["content-type"] == "image/png"
        status, _, body = request(f"{base}/metrics", headers=auth)
        assert status == 200 and b"cxrzoo_batch_size_bucket" in body
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_serve_command_errors_are_one_line(zoo, tmp_path):
    from click.testing import CliRunner

    from cxrzoo.cli import main
    from cxrzoo.optional import install_hint

    empty = tmp_path / "empty"
    empty.write_text("\n")
    r = CliRunner().invoke(main, ["serve", MODEL, "--token-file", str(empty)])
    assert r.exit_code == 3 and "the file is empty" in r.output
    r = CliRunner().invoke(main, ["serve", "no_such_model"])
    assert r.exit_code == 2 and "No trained model 'no_such_model'" in r.output
    assert install_hint("fastapi") == 'pip install "cxrzoo[serve]"'
