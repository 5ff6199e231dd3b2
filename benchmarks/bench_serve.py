"""``cxrzoo serve`` under load, on 127.0.0.1 only: latency, throughput, batch sizes, memory.

    .venv/bin/python benchmarks/bench_serve.py             # 1, 8, 32 clients, 192 requests each
    .venv/bin/python benchmarks/bench_serve.py --quick     # 1 and 8 clients, 24 requests: a smoke run

A ``cxrzoo serve`` process (its own subprocess, ``--stop-after`` so that it ends by itself) holds
``chest_xray_attention`` in its tiny configuration at 224 px input, untrained, in a temporary
store. ``--unique`` PNG radiographs of ``--size`` px (synthetic phantoms) are posted, round
robin, by 1, 8 and 32 concurrent clients (threads with ``http.client``, one keep-alive
connection each), a fixed number of requests per level, every request bounded by a timeout.
For each level: p50 and p95 latency, requests per second, the batch sizes the server reached
(from its ``/metrics`` histogram, counted per level), and the server's resident memory (VmRSS of
its process) before and after; the last level runs a second time, so that memory which grows
with the batch size reached is told apart from memory that keeps growing. Beside them, ``cxrzoo predict`` on the same images, the same
number of times over, in one process with the same model (``predict_stream``, batches of 32):
the throughput that serving should approach under concurrency.

Results go to benchmarks/results/serve.json and are printed; the figures of a recorded run are
in benchmarks/results/serve.md.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import CpuMonitor, add_common_args, exit_on_sigterm, print_table, report_load, write_results

MODEL = "chest_xray_attention"
STORE_NAME = "bench_serve"
IMAGE_SIZE = 224
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) / 1024 if match else None


def batch_counts(port: int) -> dict[str, float]:
    """The server's cumulative batch-size histogram: upper bound -> batches at or under it."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    out = {}
    for le, count in re.findall(r'cxrzoo_batch_size_bucket\{le="([^"]+)",model="[^"]+"\} ([0-9.e+]+)', text):
        out[le] = float(count)
    for le, count in re.findall(r'cxrzoo_batch_size_bucket\{model="[^"]+",le="([^"]+)"\} ([0-9.e+]+)', text):
        out[le] = float(count)
    return out


def batches_between(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """Batches per size bucket (``<=1``, ``<=2`` …) made between two histogram readings."""
    bounds = sorted((b for b in after if b != "+Inf"), key=float)
    out, below = {}, 0.0
    for b in bounds:
        total = after[b] - before.get(b, 0.0)
        if total - below:
            out[f"<={float(b):g}"] = int(total - below)
        below = total
    return out


def run_level(port: int, images: list[bytes], clients: int, requests: int, timeout: float) -> dict[str, Any]:
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body = images[i % len(images)]
                started = time.perf_counter()
                try:
                    conn.request(
                        "POST", f"/v1/models/{STORE_NAME}/predict", body, {"Content-Type": "image/png"}
                    )
                    response = conn.getresponse()
                    response.read()
                    ok = response.status == 200
                    why = str(response.status)
                except (OSError, http.client.HTTPException) as exc:
                    ok, why = False, type(exc).__name__
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
                elapsed = time.perf_counter() - started
                with lock:
                    (latencies.append(elapsed) if ok else failures.append(why))
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * requests)
    wall = time.perf_counter() - started
    lat = sorted(latencies)
    return {
        "clients": clients,
        "requests": requests,
        "ok": len(lat),
        "failed": len(failures),
        "failures": sorted(set(failures)),
        "p50_ms": 1000 * statistics.median(lat) if lat else None,
        "p95_ms": 1000 * lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None,
        "requests_per_s": len(lat) / wall if wall > 0 else None,
    }


def predict_throughput(folder: Path, repeats: int) -> float:
    """Images per second of ``predict_stream`` over the images, ``repeats`` times (one process)."""
    import cxrzoo
    from cxrzoo.inference import predict_stream

    model = cxrzoo.load(STORE_NAME)
    paths = sorted(folder.glob("*.png")) * repeats
    list(predict_stream(model, paths[:8]))  # warm-up
    started = time.perf_counter()
    count = sum(1 for p in predict_stream(model, paths, batch_size=32) if p.error is None)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, device=False)
    parser.add_argument("--clients", default=None, help="comma-separated client counts (default 1,8,32)")
    parser.add_argument("--requests", type=int, default=None, help="requests per level (default 192)")
    parser.add_argument("--size", type=int, default=512, help="side of the PNG radiographs (default 512)")
    parser.add_argument("--unique", type=int, default=16, help="distinct images (default 16)")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    args = parser.parse_args()
    exit_on_sigterm()
    clients = [int(c) for c in (args.clients or ("1,8" if args.quick else "1,8,32")).split(",")]
    requests = args.requests or (24 if args.quick else 192)

    with tempfile.TemporaryDirectory(prefix="cxrzoo-bench-serve-") as tmp:
        home, folder = Path(tmp) / "home", Path(tmp) / "images"
        os.environ["CXRZOO_HOME"] = str(home)
        from common import write_phantom_pngs

        from cxrzoo import create_model, store
        from cxrzoo.plugins import models

        config = models.get(MODEL).tiny_config().replace(image_size=IMAGE_SIZE)
        store.save(create_model(MODEL, config), STORE_NAME)
        write_phantom_pngs(folder, args.unique, size=args.size)
        images = [p.read_bytes() for p in sorted(folder.glob("*.png"))]

        port = free_port()
        stop_after = 60 + 4 * requests * len(clients)
        cmd = [sys.executable, "-m", "cxrzoo", "serve", STORE_NAME, "--host", HOST, "--port", str(port)]
        cmd += ["--max-batch", str(args.max_batch), "--log-level", "warning", "--stop-after", str(stop_after)]
        server = subprocess.Popen(cmd, env=os.environ.copy(), stderr=subprocess.DEVNULL)
        monitor = CpuMonitor()
        rows = []
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    socket.create_connection((HOST, port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.3)
            run_level(port, images, 1, 4, args.timeout)  # warm-up
            rss_start = rss_mib(server.pid)
            # The last level runs twice: memory that grows with the batch size reached shows in
            # the first pass; a leak would go on growing in the second.
            for k, n in enumerate([*clients, clients[-1]]):
                before_hist, rss_before = batch_counts(port), rss_mib(server.pid)
                row = run_level(port, images, n, requests, args.timeout)
                row["pass"] = "again" if k == len(clients) else "first"
                after_hist = batch_counts(port)
                row["batches"] = batches_between(before_hist, after_hist)
                made = sum(row["batches"].values())
                row["mean_batch"] = row["ok"] / made if made else None
                row["rss_before_mib"], row["rss_after_mib"] = rss_before, rss_mib(server.pid)
                rows.append(row)
                print(
                    f"{n:>3} client(s) ({row['pass']}): p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms, "
                    f"{row['requests_per_s']:.1f} req/s, batches {row['batches']}, "
                    f"RSS {row['rss_before_mib']:.0f} -> {row['rss_after_mib']:.0f} MiB",
                    flush=True,
                )
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        repeats = max(1, requests // len(images))
        predict_rate = predict_throughput(folder, repeats)
        report_load(monitor)

    for row in rows:
        row["vs_predict"] = row["requests_per_s"] / predict_rate if row["requests_per_s"] else None
    print(f"cxrzoo predict (predict_stream, one process): {predict_rate:.1f} images/s")
    print_table(
        rows,
        [
            ("clients", "clients"),
            ("pass", "pass"),
            ("ok", "ok"),
            ("failed", "failed"),
            ("p50_ms", "p50 ms"),
            ("p95_ms", "p95 ms"),
            ("requests_per_s", "req/s"),
            ("vs_predict", "x predict"),
            ("mean_batch", "mean batch"),
            ("rss_before_mib", "RSS before MiB"),
            ("rss_after_mib", "RSS after MiB"),
        ],
    )
    rss_end = rows[-1]["rss_after_mib"] if rows else None
    print(f"server RSS after warm-up {rss_start:.0f} MiB, at the end {rss_end:.0f} MiB")
    path = write_results(
        "serve",
        {
            "model": f"{MODEL} (tiny, {IMAGE_SIZE} px, untrained)",
            "images": {"count": len(images), "size": args.size},
            "max_batch": args.max_batch,
            "levels": rows,
            "predict_images_per_s": predict_rate,
            "server_rss_mib": {"after_warmup": rss_start, "end": rss_end},
        },
        out=args.out,
        quick=args.quick,
        monitor=monitor,
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
