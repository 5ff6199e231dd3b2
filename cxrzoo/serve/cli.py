"""``cxrzoo serve NAME [NAME…]``: the models behind an HTTP API and a web page.

Only click is imported here, so ``cxrzoo --help`` lists the command without FastAPI installed;
running it without the ``serve`` extra is one line with the pip command (exit 3).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import click

from cxrzoo.clickutil import DEVICE, ZooCommand


def read_token(path: str) -> str:
    """The bearer token in ``path``: its first line, stripped; an error when empty."""
    from cxrzoo.errors import DataError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"--token-file {path}: {exc.strerror or exc}") from None
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise DataError(f"--token-file {path}: the file is empty; write the token on its first line")
    return token


@click.command(cls=ZooCommand)
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--device", type=DEVICE, help="cpu, cuda, cuda:N, mps … (default: cpu).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help="File whose first line is a bearer token that /v1 and /metrics requests must carry.",
)
@click.option(
    "--max-batch", type=click.IntRange(min=1), default=16, show_default=True, help="Images per batch."
)
@click.option(
    "--max-wait-ms",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Longest wait for a batch to fill while other requests are arriving.",
)
@click.option(
    "--queue-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Images waiting per model before requests get 429.",
)
@click.option("--max-body-mb", type=click.FloatRange(min=0, min_open=True), default=32.0, show_default=True)
@click.option(
    "--reload-on-change",
    is_flag=True,
    help="Reload a model whose store entry changed on disk (default: refuse it with 409 until reloaded).",
)
@click.option(
    "--uncertainty",
    is_flag=True,
    help="Add each probability's spread (ensemble members' disagreement, or the mirror image's).",
)
@click.option(
    "--stop-after",
    type=click.FloatRange(min=0, min_open=True),
    help="Shut down by itself after this many seconds (tests, benchmarks).",
)
@click.option(
    "--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info"
)
def serve(
    names: tuple[str, ...],
    host: str,
    port: int,
    device: str | None,
    token_file: str | None,
    max_batch: int,
    max_wait_ms: float,
    queue_size: int,
    max_body_mb: float,
    reload_on_change: bool,
    uncertainty: bool,
    stop_after: float | None,
    log_level: str,
) -> None:
    """Serve trained models over HTTP: a JSON API, Prometheus metrics and a web page at /.

    NAME is a trained model (store name or folder, as for 'cxrzoo predict'); each is loaded
    once and served as /v1/models/NAME. Requests are grouped into batches of at most
    --max-batch images. A model whose store entry changes on disk is refused (409) until it is
    reloaded (POST /v1/models/NAME/reload) or the server restarts, unless --reload-on-change.
    The API's OpenAPI schema is at /openapi.json, its pages at /docs.
    """
    from cxrzoo.optional import require

    for module in ("fastapi", "uvicorn", "prometheus_client", "python_multipart"):
        require(module, purpose="cxrzoo serve")
    import uvicorn

    from cxrzoo.serve.app import create_app
    from cxrzoo.serve.models import ServedModel, ServeOptions

    options = ServeOptions(
        max_batch=max_batch,
        max_wait=max_wait_ms / 1000.0,
        queue_size=queue_size,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        token=read_token(token_file) if token_file else None,
        device=device,
        reload_on_change=reload_on_change,
        uncertainty=uncertainty,
    )
    models = [ServedModel(name, device=device) for name in names]
    app = create_app(models, options)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on"))
    served = ", ".join(m.name for m in models)
    guard = "; bearer token required" if options.token else ""
    click.echo(f"Serving {served} at http://{host}:{port}/{guard}", err=True)
    if options.token is None and host not in ("127.0.0.1", "localhost", "::1"):
        click.secho(
            f"Warning: {host} is reachable from other machines and no --token-file was given: "
            f"anyone who reaches it can use the models",
            fg="yellow",
            err=True,
        )
    if stop_after is not None:
        timer = threading.Timer(stop_after, lambda: setattr(server, "should_exit", True))
        timer.daemon = True
        timer.start()
    server.run()
    if not server.started:
        sys.exit(1)
