"""Imported torchxrayvision networks: parity with torchxrayvision, and fine-tuning on real NIH images.

    python benchmarks/bench_xrv.py [--data DIR] [--images N] [--epochs E] [--image-size S] [--skip-finetune]

No published file can be downloaded here, so every network has seeded random weights made by
torchxrayvision itself (``DenseNet(weights=None)``, a torchvision ResNet-50 loaded by
``xrv.models.ResNet``), saved in each published format and imported with ``cxrzoo import``.

Parity: on N radiographs of the sample, read with torchxrayvision's own preprocessing
(``normalize``, ``XRayCenterCrop``, ``XRayResizer``), the max |difference| between cxrzoo's
probabilities and torchxrayvision's sigmoid outputs on the same tensors, whether the positive
calls agree at the published thresholds (torchxrayvision's ``op_norm >= 0.5``), and the max
|difference| when cxrzoo decodes and preprocesses the files itself.

Fine-tuning (random weights: what is measured is that the path runs end to end, and its cost):

    cxrzoo import xrv:densenet121-res224-all --file densenet-random.pt
    cxrzoo train xrv_densenet --init xrv-densenet121-res224-all --data DATA --image-size S --recipe quick --epochs E
    cxrzoo train xrv_densenet --init xrv-densenet121-res224-all ... --freeze-backbone
    cxrzoo evaluate NAME --split test --json --bootstrap 0

Results: ``benchmarks/results/xrv.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "nih-sample-512"
CASES = [
    ("densenet121-res224-all", "legacy"),
    ("densenet121-res224-all", "module"),
    ("densenet121-res224-all", "state"),
    ("densenet121-res224-nih", "module"),
    ("densenet121-res224-chex", "module"),
    ("densenet121-res224-rsna", "state"),
    ("resnet50-res512-all", "state"),
    ("resnet50-res512-all", "module"),
]


def cxrzoo(*args: str, env: dict[str, str]) -> str:
    cmd = [sys.executable, "-m", "cxrzoo", *args]
    print("$ cxrzoo " + shlex.join(args), flush=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def reference(xrv, name: str, fmt: str, folder: Path):
    """torchxrayvision's model of ``name`` with seeded random weights, and its file."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)

    def randomise(net):
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.copy_(1 + 0.1 * torch.randn(m.num_features, generator=g))
                    m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
                    m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                    m.running_var.copy_(1 + 0.2 * torch.rand(m.num_features, generator=g))

    if name.startswith("densenet"):
        net = xrv.models.DenseNet(weights=None)
        randomise(net)
        module, state = folder / f"{name}.pt", folder / f"{name}-state.pt"
        torch.save(net, module, _use_new_zipfile_serialization=fmt != "legacy")  # torch < 1.6 format
        torch.save(net.state_dict(), state)
        xrv.models.get_weights = lambda *a, **k: str(module)
        ref = xrv.models.DenseNet(weights=name)
    else:
        import torchvision

        net = torchvision.models.resnet50(num_classes=18, weights=None)
        net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        randomise(net)
        state, module = folder / f"{name}-state.pt", folder / f"{name}.pt"
        torch.save(net.state_dict(), state)
        xrv.models.get_weights = lambda *a, **k: str(state)
        ref = xrv.models.ResNet(weights=name)
        torch.save(ref, module)
    return ref.eval(), state if fmt == "state" else module


def xrv_inputs(xrv, paths: list[Path], size: int) -> torch.Tensor:
    import skimage.io
    import torchvision

    transform = torchvision.transforms.Compose(
        [xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(size)]
    )
    out = []
    for p in paths:
        img = xrv.datasets.normalize(skimage.io.imread(p), 255)
        if img.ndim == 3:
            img = img.mean(2)
        out.append(torch.from_numpy(transform(img[None, ...])))
    return torch.stack(out).float()


def parity(data: Path, n_images: int, env: dict[str, str], folder: Path) -> list[dict]:
    import torchxrayvision as xrv

    os.environ.update(env)
    from cxrzoo_xrv import published

    import cxrzoo as zoo

    paths = sorted((data / "images_001" / "images").glob("*.png"))[:n_images]
    rows = []
    for name, fmt in CASES:
        w = published.get(name)
        ref, file = reference(xrv, name, fmt, folder)
        entry = f"{name}-{fmt}"
        cxrzoo("import", w.source, "--file", str(file), "--name", entry, "--overwrite", env=env)
        model = zoo.load(entry)
        named = list(w.named)
        x = xrv_inputs(xrv, paths, w.input_size)
        with torch.no_grad():
            ref.op_threshs, ref.apply_sigmoid = None, True
            theirs = ref(x)[:, named].numpy()
            ref.op_threshs = torch.tensor([np.nan if t is None else t for t in w.operating_thresholds])
            their_calls = ref(x)[:, named].numpy() >= 0.5
            ours = model.probabilities(x).numpy()
        t0 = time.perf_counter()
        own = model.predict_proba([str(p) for p in paths])
        seconds = time.perf_counter() - t0
        pub = [w.operating_thresholds[i] is not None for i in named]
        calls = ours >= model.thresholds
        row = {
            "weights": name,
            "format": {"module": "whole pickled module", "legacy": "whole module, torch < 1.6 format"}.get(
                fmt, "state dict"
            ),
            "outputs_kept": len(named),
            "images": len(paths),
            "max_abs_diff_same_input": float(np.abs(ours - theirs).max()),
            "calls_equal": bool((calls[:, pub] == their_calls[:, pub]).all()),
            "calls_compared": int(calls[:, pub].size),
            "positive_calls": int(calls[:, pub].sum()),
            "max_abs_diff_cxrzoo_preprocessing": float(np.abs(own - theirs).max()),
            "cxrzoo_predict_seconds_per_image": round(seconds / len(paths), 3),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def finetune(data: Path, epochs: int, size: int, env: dict[str, str], folder: Path) -> list[dict]:
    import torchxrayvision as xrv

    torch.manual_seed(0)
    file = folder / "densenet-random.pt"
    torch.save(xrv.models.DenseNet(weights=None), file)
    cxrzoo("import", "xrv:densenet121-res224-all", "--file", str(file), "--overwrite", env=env)
    rows = []
    for label, extra in (
        ("fine-tune, backbone at 0.1 x lr", ["--backbone-lr", "0.1"]),
        ("linear probe", ["--freeze-backbone"]),
    ):
        name = "ft-probe" if "--freeze-backbone" in extra else "ft-full"
        args = [
            "train", "xrv_densenet", "--init", "xrv-densenet121-res224-all", "--data", str(data),
            "--image-size", str(size), "--recipe", "quick", "--epochs", str(epochs), "--name", name,
            "--no-progress", *extra,
        ]  # fmt: skip
        t0 = time.perf_counter()
        log = cxrzoo(*args, env=env)
        seconds = time.perf_counter() - t0
        init_line = next((line for line in log.splitlines() if line.startswith("Initialised from")), "")
        metrics = json.loads(
            cxrzoo("evaluate", name, "--split", "test", "--json", "--bootstrap", "0", env=env)
        )
        doc = json.loads((Path(env["CXRZOO_HOME"]) / "models" / name / "config.json").read_text())
        row = {
            "run": label,
            "command": "cxrzoo " + shlex.join(args),
            "init": doc["training"]["init"],
            "init_line": init_line,
            "epochs": epochs,
            "image_size": size,
            "train_seconds": round(seconds, 1),
            "val_macro_auroc": (doc.get("metrics") or {}).get("macro_auroc"),
            "test_macro_auroc": metrics.get("macro_auroc"),
            "test_images": metrics.get("n_images"),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def markdown(result: dict) -> str:
    lines = [
        "# Imported torchxrayvision networks",
        "",
        f"{result['when']}, {result['machine']}; torchxrayvision {result['torchxrayvision']}, torch {result['torch']}.",
        "Seeded random weights (no published file can be downloaded here), saved by torchxrayvision in each",
        "published format and imported with `cxrzoo import`. Produced by `python benchmarks/bench_xrv.py`.",
        "",
        "## Parity with torchxrayvision on real NIH radiographs",
        "",
        "| Weights | Format | Outputs kept | Images | max diff, same input | Calls equal (compared) | max diff, cxrzoo's own preprocessing |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for r in result["parity"]:
        lines.append(
            f"| {r['weights']} | {r['format']} | {r['outputs_kept']} | {r['images']} | "
            f"{r['max_abs_diff_same_input']:.1e} | {'yes' if r['calls_equal'] else 'NO'} ({r['calls_compared']}) | "
            f"{r['max_abs_diff_cxrzoo_preprocessing']:.1e} |"
        )
    lines += [
        "",
        "Same input: both libraries fed the tensors torchxrayvision's preprocessing makes. cxrzoo's own",
        "preprocessing resizes the 8-bit image with area interpolation (torchxrayvision: skimage on floats).",
    ]
    if result.get("finetune"):
        lines += [
            "",
            "## Fine-tuning an imported network on the real NIH sample",
            "",
            "Random weights, so the AUROCs say only that the path runs end to end (no transfer happens).",
            "",
            "| Run | Loaded / adapted / new | Epochs | Size | Train s | Val macro AUROC | Test macro AUROC (images) |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in result["finetune"]:
            i = r["init"]
            lines.append(
                f"| {r['run']} | {i['loaded']} / {i['adapted']} / {i['new']} | {r['epochs']} | {r['image_size']} | "
                f"{r['train_seconds']} | {r['val_macro_auroc']:.3f} | {r['test_macro_auroc']:.3f} ({r['test_images']}) |"
            )
        lines += ["", "Commands:", ""] + [f"    {r['command']}" for r in result["finetune"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "xrv")
    args = parser.parse_args()
    import torchxrayvision

    with tempfile.TemporaryDirectory(prefix="cxrzoo-xrv-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "CXRZOO_HOME": str(folder / "home")}
        result = {
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
            "torchxrayvision": torchxrayvision.__version__,
            "torch": torch.__version__,
            "parity": parity(args.data, args.images, env, folder),
        }
        if not args.skip_finetune:
            result["finetune"] = finetune(args.data, args.epochs, args.image_size, env, folder)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
