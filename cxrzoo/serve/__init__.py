"""``cxrzoo serve``: trained models behind an HTTP API and a web page (FastAPI + uvicorn).

Install with ``pip install "cxrzoo[serve]"``. :func:`cxrzoo.serve.app.create_app` builds the
ASGI application from models loaded once; :mod:`cxrzoo.serve.cli` is the command. Nothing
here imports FastAPI until an application is built, so the command line stays fast without
the extra.
"""

from __future__ import annotations

__all__: list[str] = []
