"""The HTTP API and web page of ``cxrzoo serve`` (FastAPI).

Endpoints (the OpenAPI schema FastAPI generates is at ``/openapi.json``, its pages at ``/docs``):

- ``POST /v1/models/{name}/predict``: one PNG, JPEG or DICOM image, as a multipart file upload
  (field ``file``) or as the raw request body; JSON with the probability of every finding, the
  calibrated thresholds, the findings called positive, and whatever out-of-distribution and
  uncertainty fields the model's predictions carry (``Prediction.details``: ``ood_score`` and
  ``in_distribution`` for a model with a gate; ``uncertainty``, per finding, with
  ``cxrzoo serve --uncertainty``).
- ``POST /v1/models/{name}/explain?finding=F&method=gradcam``: the Grad-CAM overlay (PNG) of
  finding F (default: the most probable) over the image as the model saw it.
- ``POST /v1/models/{name}/reload``: load a store entry again that changed on disk.
- ``POST /v1/preview``: the decoded image as a PNG (the page shows DICOM files with it).
- ``GET /v1/models``, ``GET /v1/models/{name}``: labels, thresholds, versions, sha256, cards.
- ``GET /healthz``; ``GET /metrics`` (Prometheus text); ``GET /`` the web page.

Errors are JSON ``{"error": KIND, "detail": MESSAGE}``: 401 (a token is required and was not
given, or is wrong), 404 (no such model: the close matches are named), 409 (the model's store
entry changed on disk: see :mod:`cxrzoo.serve.models`), 413 (the body is over
``max_body_bytes``), 422 (the image cannot be decoded, and why; an empty body; an unknown
finding), 429 with ``Retry-After`` (the model's queue is full), 500 (``internal``: a bug).

With a token, every ``/v1`` endpoint and ``/metrics`` need ``Authorization: Bearer TOKEN``;
``/healthz`` and the page itself do not (the page asks for the token).
"""

from __future__ import annotations

import asyncio
import difflib
import hmac
import importlib.resources
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import cv2
import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from cxrzoo.data.io import ImageReadError, read_image_bytes
from cxrzoo.errors import one_line
from cxrzoo.serve.models import Batcher, PredictFn, QueueFull, ServedModel, ServeOptions, jsonable

#: Largest side of the image ``/v1/preview`` returns.
PREVIEW_SIZE = 512
#: Content types a raw body may have (anything else is still tried, by its content).
IMAGE_TYPES = ("image/png", "image/jpeg", "application/dicom", "application/octet-stream")

_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One PNG, JPEG or DICOM image: a multipart upload (field 'file') or the raw body.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            **{kind: {"schema": {"type": "string", "format": "binary"}} for kind in IMAGE_TYPES},
        },
    }
}


def _error_doc(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        401: "A bearer token is required (cxrzoo serve --token-file) and was missing or wrong.",
        404: "No model of that name on this server.",
        409: "The model's store entry changed on disk since it was loaded; reload it.",
        413: "The request body is larger than the server's limit.",
        422: "The image could not be decoded (the reason is given), or the request was incomplete.",
        429: "The model's queue is full; retry after Retry-After seconds.",
    }
    return {
        code: {
            "description": text[code],
            "content": {
                "application/json": {
                    "example": {"error": "kind", "detail": "what went wrong, in one line"},
                }
            },
        }
        for code in codes
    }


class ApiError(Exception):
    """An error answered as ``{"error": kind, "detail": detail}`` with ``status``."""

    def __init__(self, status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail, self.headers = status, kind, detail, headers or {}


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (one per application)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cxrzoo_requests",
            "HTTP requests answered, by endpoint and status code.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cxrzoo_request_seconds",
            "Time from request to answer, by endpoint.",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "cxrzoo_batch_size",
            "Images per batch the model predicted, by model.",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "cxrzoo_batch_seconds",
            "Time one batch took in the model (decoded images to probabilities).",
            ["model"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.errors = Counter(
            "cxrzoo_errors", "Requests answered with an error, by kind.", ["kind"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "cxrzoo_queue_depth", "Images waiting for the model.", ["model"], registry=self.registry
        )


def _page_dir() -> Any:
    return importlib.resources.files("cxrzoo.serve") / "static"


def create_app(
    models: Sequence[ServedModel],
    options: ServeOptions | None = None,
    *,
    predict: PredictFn | None = None,
) -> FastAPI:
    """The ASGI application serving ``models`` (already loaded) under ``options``.

    ``predict`` replaces :func:`cxrzoo.inference.predict_stream` in the batchers (tests use it
    to fake out-of-distribution details). Each model's batching thread starts with the
    application's lifespan and stops with it.
    """
    options = options or ServeOptions()
    served: dict[str, ServedModel] = {}
    for m in models:
        if m.name in served:
            from cxrzoo.errors import UserError

            raise UserError(f"Two models would be served as {m.name!r}: give each model once")
        served[m.name] = m
    metrics = Metrics()
    batchers: dict[str, Batcher] = {}

    def start_batchers() -> None:
        for name, m in served.items():
            if name not in batchers:
                batchers[name] = Batcher(
                    m,
                    options,
                    on_batch=lambda n, s, name=name: (
                        metrics.batch_size.labels(name).observe(n),
                        metrics.batch_seconds.labels(name).observe(s),
                    ),
                    predict=predict,
                )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        start_batchers()
        try:
            yield
        finally:
            for b in batchers.values():
                await run_in_threadpool(b.close)
            batchers.clear()

    app = FastAPI(
        title="cxrzoo",
        summary="Chest X-ray findings from cxrzoo's trained models",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.served = served
    app.state.batchers = batchers
    app.state.metrics = metrics
    app.state.options = options

    # -- errors and metrics -------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        metrics.errors.labels(exc.kind).inc()
        return JSONResponse({"error": exc.kind, "detail": exc.detail}, exc.status, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug (of cxrzoo, a plugin or the model), answered in the same shape as the others.
        return JSONResponse(
            {"error": "internal", "detail": f"internal error: {type(exc).__name__}: {one_line(exc, 300)}"},
            500,
        )

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Any]) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            metrics.requests.labels(endpoint, request.method, str(status)).inc()
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            if status == 500:
                metrics.errors.labels("internal").inc()

    # -- guards -------------------------------------------------------------------------
    def authorise(request: Request) -> None:
        if options.token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), options.token.encode()
        ):
            why = "wrong bearer token" if given else "this server needs 'Authorization: Bearer TOKEN'"
            raise ApiError(401, "unauthorized", why, {"WWW-Authenticate": 'Bearer realm="cxrzoo"'})

    async def model_for(name: str, *, check: bool = True) -> ServedModel:
        m = served.get(name)
        if m is None:
            close = difflib.get_close_matches(name, list(served), n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ApiError(
                404,
                "unknown_model",
                f"No model {name!r} on this server.{hint} GET /v1/models lists the {len(served)} served.",
            )
        if check:
            problem = m.change()
            if problem is not None and options.reload_on_change:
                try:
                    await run_in_threadpool(m.reload)
                    problem = None
                except Exception as exc:
                    problem = f"{problem}; reloading it failed ({exc})"
                    m.problem = problem
            if problem is not None:
                raise ApiError(
                    409,
                    "model_changed",
                    f"Model {name!r} is not served: {problem}. Reload it with POST "
                    f"/v1/models/{name}/reload, or restart the server.",
                )
        return m

    async def image_of(request: Request) -> tuple[np.ndarray, str]:
        data, filename = await _read_upload(request, options.max_body_bytes)
        try:
            image = await run_in_threadpool(read_image_bytes, data, filename)
        except ImageReadError as exc:
            raise ApiError(422, "undecodable_image", f"{filename}: {exc.reason}") from None
        return image, filename

    guarded = [Depends(authorise)]

    # -- endpoints ----------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((_page_dir() / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=str(_page_dir())), name="static")

    @app.get("/healthz", summary="Liveness: the models and whether their store entries changed")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "models": {name: ("changed" if m.change() else "ok") for name, m in served.items()},
        }

    @app.get("/metrics", summary="Prometheus metrics", dependencies=guarded, response_class=Response)
    async def prometheus() -> Response:
        for name, b in batchers.items():
            metrics.queue_depth.labels(name).set(b.depth())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", summary="The served models", dependencies=guarded, responses=_error_doc(401))
    async def list_models(card: bool = True) -> dict[str, Any]:
        for m in served.values():
            m.change()
        return {"models": [jsonable(m.info(card=card)) for m in served.values()]}

    @app.get(
        "/v1/models/{name}",
        summary="One served model: labels, thresholds, versions, sha256 and card",
        dependencies=guarded,
        responses=_error_doc(401, 404),
    )
    async def model_info(name: str) -> dict[str, Any]:
        m = await model_for(name, check=False)
        m.change()
        return jsonable(m.info())

    @app.post(
        "/v1/models/{name}/reload",
        summary="Load the model's store entry again (after it changed on disk)",
        dependencies=guarded,
        responses=_error_doc(401, 404, 409),
    )
    async def reload(name: str) -> dict[str, Any]:
        m = await model_for(name, check=False)
        try:
            await run_in_threadpool(m.reload)
        except Exception as exc:
            m.problem = f"reloading its store entry failed ({exc})"
            raise ApiError(409, "model_changed", f"Model {name!r} is not served: {m.problem}") from None
        return jsonable(m.info(card=False))

    @app.post(
        "/v1/models/{name}/predict",
        summary="Probabilities, thresholds and positive findings for one image",
        dependencies=guarded,
        openapi_extra=_IMAGE_BODY,
        responses=_error_doc(401, 404, 409, 413, 422, 429),
    )
    async def predict_image(name: str, request: Request) -> dict[str, Any]:
        m = await model_for(name)
        if name not in batchers:  # an ASGI server that skipped the lifespan
            start_batchers()
        batcher = batchers[name]
        finished = batcher.arriving()
        try:
            image, filename = await image_of(request)
            try:
                future = batcher.submit(image)
            except QueueFull as exc:
                raise ApiError(429, "queue_full", str(exc), {"Retry-After": str(exc.retry_after)}) from None
        finally:
            finished()
        pred = await asyncio.wrap_future(future)
        if pred.error is not None:
            raise ApiError(422, "undecodable_image", f"{filename}: {pred.error}")
        return _answer(m, filename, pred)

    @app.post(
        "/v1/models/{name}/explain",
        summary="Grad-CAM overlay (PNG) of one finding over the image as the model saw it",
        dependencies=guarded,
        openapi_extra=_IMAGE_BODY,
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}}, "description": "The overlay, a PNG."},
            **_error_doc(401, 404, 409, 413, 422),
        },
    )
    async def explain_image(
        name: str,
        request: Request,
        finding: str | None = Query(None, description="A label of the model (default: the most probable)."),
        method: str = Query("gradcam", pattern="^(gradcam|gradcam\\+\\+)$"),
    ) -> Response:
        m = await model_for(name)
        labels = list(m.model.labels)
        if finding is not None and finding not in labels:
            close = difflib.get_close_matches(finding, labels, n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ApiError(
                422,
                "unknown_finding",
                f"Model {name!r} has no finding {finding!r}.{hint} Its labels: {labels}",
            )
        image, filename = await image_of(request)
        png, chosen, probability = await run_in_threadpool(
            _explain, m, image, filename, finding, method, options.device
        )
        return Response(
            png,
            media_type="image/png",
            headers={"X-Finding": chosen, "X-Probability": f"{probability:.6f}"},
        )

    @app.post(
        "/v1/preview",
        summary="The decoded image as a PNG (no larger than 512 pixels a side)",
        dependencies=guarded,
        openapi_extra=_IMAGE_BODY,
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "A PNG."}, **_error_doc(401, 413, 422)},
    )
    async def preview(request: Request) -> Response:
        image, _ = await image_of(request)
        return Response(await run_in_threadpool(_preview_png, image), media_type="image/png")

    return app


def _version() -> str:
    import importlib.metadata as md

    try:
        return md.version("cxrzoo")
    except md.PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0"


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ApiError(
            413, "too_large", f"request body of {int(length):,} bytes is over the limit of {limit:,}"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"request body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_upload(request: Request, limit: int) -> tuple[bytes, str]:
    """The image's bytes and a name for it, from a multipart upload or the raw body."""
    body = await _read_body(request, limit)
    ctype = request.headers.get("content-type", "")
    if ctype.lower().startswith("multipart/form-data"):

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=4, max_fields=16)
        except Exception as exc:  # a malformed multipart body
            raise ApiError(422, "bad_upload", f"the multipart body cannot be read ({exc})") from None
        # File parts are upload objects (with a file name and read()); other fields are strings.
        files = [v for v in form.values() if not isinstance(v, str)]
        named = form.get("file")
        chosen = named if named is not None and not isinstance(named, str) else (files[0] if files else None)
        if chosen is None:
            raise ApiError(
                422, "bad_upload", "the multipart body holds no file: send the image as field 'file'"
            )
        data = await chosen.read()
        name = chosen.filename or "upload"
        await form.close()
    else:
        data = body
        name = request.headers.get("x-filename") or "upload"
    if not data:
        raise ApiError(422, "empty_body", f"{name}: empty body; send a PNG, JPEG or DICOM image")
    return data, name.replace("/", "_").replace("\\", "_")


def _answer(m: ServedModel, filename: str, pred: Any) -> dict[str, Any]:
    model = m.model
    labels = list(model.labels)
    probs = np.asarray(pred.probabilities, dtype=np.float64)
    positives = model.positives(probs[None])[0]
    out: dict[str, Any] = {
        "model": m.name,
        "image": filename,
        "config_sha256": m.config_sha256,
        "calibrated": m.calibrated,
        "labels": labels,
        "probabilities": dict(zip(labels, map(float, probs), strict=True)),
        "thresholds": dict(zip(labels, map(float, model.thresholds), strict=True)),
        "positive": sorted(positives, key=lambda label: -probs[labels.index(label)]),
    }
    details = dict(getattr(pred, "details", None) or {})
    spread = details.get("uncertainty")
    if spread is not None and np.ndim(spread) == 1 and len(spread) == len(labels):
        details["uncertainty"] = dict(zip(labels, map(float, spread), strict=True))
    for key, value in details.items():
        out.setdefault(str(key), value)
    return jsonable(out)


def _explain(
    m: ServedModel, image: np.ndarray, filename: str, finding: str | None, method: str, device: str | None
) -> tuple[bytes, str, float]:
    from cxrzoo.inference import predict_proba
    from cxrzoo.reports.gradcam import gradcam_maps, overlay

    with m.lock:
        model = m.model
        probs = predict_proba(model, [image], device=device, workers=0)[0]
        k = int(np.argmax(probs)) if finding is None else list(model.labels).index(finding)
        result = gradcam_maps(model, image, [k], method=method, name=filename, device=device)
    drawn = overlay(result.image, result.maps[0])
    ok, buf = cv2.imencode(".png", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB image
        raise RuntimeError("could not encode the overlay as PNG")
    return buf.tobytes(), model.labels[k], float(probs[k])


def _preview_png(image: np.ndarray) -> bytes:
    h, w = image.shape[:2]
    scale = PREVIEW_SIZE / max(h, w)
    if scale < 1:
        image = cv2.resize(
            image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    ok, buf = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover
        raise RuntimeError("could not encode the preview as PNG")
    return buf.tobytes()


__all__ = ["ApiError", "Metrics", "create_app"]
