"""What the out-of-distribution gate and per-image uncertainty cost in ``predict``.

The same model (chest_xray_attention, its default 224 px config, untrained weights: the cost
does not depend on them) predicts the same folder of synthetic 512 px PNGs through
``predict_stream`` four ways, alternated so that a change in the machine's load hits each
alike: without the gate (a model that has none: exactly what every model did before the gate
existed), with the gate (the default ``--ood flag``), and with ``--uncertainty`` on top. The
baseline is measured in the same run; the figures are images per second and their ratio to it.

    python benchmarks/bench_gate.py [--images 192] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import (
    CpuMonitor,
    add_common_args,
    exit_on_sigterm,
    fmt_ratio,
    median,
    print_table,
    ratio,
    report_load,
    resolve_device,
    write_phantom_pngs,
    write_results,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--repeat", type=int, default=3)
    add_common_args(parser)
    args = parser.parse_args()
    exit_on_sigterm()
    n = 24 if args.quick else args.images
    repeat = 1 if args.quick else args.repeat
    device = resolve_device(args.device)

    import cxrzoo
    from cxrzoo.inference import predict_stream
    from cxrzoo.ood import fit_detector

    with tempfile.TemporaryDirectory(prefix="cxrzoo-bench-gate-") as tmp:
        table, _, _ = write_phantom_pngs(Path(tmp) / "png", n + 60, size=512)
        paths = table["path"].tolist()
        fit_paths, held_paths, paths = paths[:40], paths[40:60], paths[60:]
        plain = cxrzoo.create_model("chest_xray_attention").eval()
        gated = cxrzoo.create_model("chest_xray_attention").eval()
        gated.load_state_dict(plain.state_dict())
        gated.ood_detector = fit_detector(gated, fit_paths, held_paths, device=device)
        ways = {
            "no gate": (plain, {}),
            "gate (--ood flag)": (gated, {"ood": True}),
            "gate + --uncertainty": (gated, {"ood": True, "uncertainty": True}),
        }
        monitor = CpuMonitor()
        times: dict[str, list[float]] = {k: [] for k in ways}
        for _ in predict_stream(plain, paths[:8], device=device):  # warm-up: threads, allocator
            pass
        for _ in range(repeat):
            for way, (model, options) in ways.items():
                start = time.perf_counter()
                count = sum(1 for p in predict_stream(model, paths, device=device, **options) if p.ok)
                times[way].append(time.perf_counter() - start)
                assert count == len(paths)
    base = len(paths) / median(times["no gate"])
    rows = []
    for way, seconds in times.items():
        rate = len(paths) / median(seconds)
        rows.append({"way": way, "images_per_s": round(rate, 1), "vs_no_gate": ratio(rate, base)})
    print_table(rows, [("way", "predict"), ("images_per_s", "img/s"), ("vs_no_gate", "vs no gate")])
    for row in rows[1:]:
        print(f"{row['way']}: {fmt_ratio(row['vs_no_gate'])} the throughput of no gate")
    report_load(monitor)
    path = write_results(
        "gate",
        {"images": len(paths), "repeat": repeat, "rows": rows, "seconds": times},
        out=args.out,
        quick=args.quick,
        device=device,
        monitor=monitor,
    )
    print(f"Results: {path}")


if __name__ == "__main__":
    main()
