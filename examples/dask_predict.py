"""Batch inference with Dask over cxrzoo's own predictor, for archives beyond one torchrun job.

    pip install "dask[distributed]"
    python examples/dask_predict.py ensemble /archive/cxr --out predictions.parquet
    python examples/dask_predict.py ensemble /archive/cxr --out p.csv --scheduler tcp://10.0.0.5:8786

The images are split into contiguous chunks; each Dask task loads the model once per worker
process (cached) and predicts its chunk with :func:`cxrzoo.inference.predict_stream`, the same
decoding, preprocessing and batching as ``cxrzoo predict``. The chunks come back in order and
are written as one prediction table (:class:`cxrzoo.reports.predictions.PredictionWriter`: the
same columns, and the same refusal to replace a file that is not a cxrzoo table without
``--overwrite``). Every worker needs cxrzoo, the model in its store (``cxrzoo pull``) and the
image paths (a shared file system).

``--scheduler`` is ``processes`` (local processes, the default), ``threads``, ``synchronous``
(one thread, for debugging), or the address of a ``dask.distributed`` scheduler. Ray Data users
map the same :func:`predict_chunk` over a dataset of paths: see the README's "Scaling out".
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from typing import Any


@functools.lru_cache(maxsize=4)
def _model(name: str, device: str) -> Any:
    import cxrzoo

    return cxrzoo.load(name, device=device)


def predict_chunk(
    paths: Sequence[str], name: str, *, batch_size: int = 32, device: str = "cpu"
) -> list[dict]:
    """Prediction-table rows for ``paths``, in order (the model is loaded once per process)."""
    from cxrzoo.inference import predict_stream
    from cxrzoo.reports.predictions import make_row

    model = _model(name, device)
    labels = list(model.labels)
    rows = []
    for pred in predict_stream(model, list(paths), batch_size=batch_size, device=device):
        positives = [] if pred.probabilities is None else model.positives(pred.probabilities[None])[0]
        rows.append(make_row(pred.path or "", labels, pred.probabilities, positives, pred.error))
    return rows


def chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a trained model: store name, folder or hf://org/repo")
    parser.add_argument("paths", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument("--out", required=True, help="table to write: .csv, .json, .jsonl or .parquet")
    parser.add_argument("--chunk", type=int, default=256, help="images per Dask task (default 256)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scheduler", default="processes")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    from cxrzoo.inference import expand_inputs
    from cxrzoo.optional import require
    from cxrzoo.reports.predictions import PredictionWriter, check_output

    check_output(args.out, overwrite=args.overwrite)
    dask = require("dask", purpose="examples/dask_predict.py")
    paths = [str(p) for p in expand_inputs(args.paths)]
    tasks = [
        dask.delayed(predict_chunk)(chunk, args.model, batch_size=args.batch_size, device=args.device)
        for chunk in chunks(paths, args.chunk)
    ]
    if args.scheduler in ("processes", "threads", "synchronous"):
        results = dask.compute(*tasks, scheduler=args.scheduler)
    else:
        distributed = require("dask.distributed", purpose="--scheduler ADDRESS")
        with distributed.Client(args.scheduler) as client:
            results = dask.compute(*tasks, scheduler=client)
    labels = list(_model(args.model, "cpu").labels)
    writer = PredictionWriter(args.out, labels, overwrite=args.overwrite)
    failed = 0
    try:
        for rows in results:
            writer.write(rows)
            failed += sum(1 for r in rows if r["error"])
    finally:
        writer.close()
    print(f"Predicted {len(paths) - failed} of {len(paths)} image(s) into {args.out}.")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
