"""Shared fixtures: small generated datasets in the Kaggle layout, and the real NIH sample."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

# Real NIH data for the tests that need it: ../shared/data beside the repository, or the
# folder named by CXRZOO_TEST_DATA (same layout: nih-sample-64/, nih-metadata/).
SHARED_DATA = Path(os.environ.get("CXRZOO_TEST_DATA") or Path(__file__).parents[1].parent / "shared" / "data")
NIH_SAMPLE = SHARED_DATA / "nih-sample-64"
NIH_METADATA = SHARED_DATA / "nih-metadata" / "Data_Entry_2017_v2020.csv.gz"

HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
# Cycled over the good images so that every label and No Finding occurs.
FINDINGS = (
    "No Finding",
    "Effusion",
    "Cardiomegaly|Effusion",
    "Hernia",
    "Atelectasis|Infiltration|Mass",
    "No Finding",
    "Nodule",
    "Pneumonia|Edema",
    "Pneumothorax",
    "Consolidation",
    "Emphysema|Fibrosis",
    "Pleural_Thickening",
)
MODES = ("grey8", "rgb", "rgba", "grey16")


@dataclass
class KaggleTree:
    """A generated dataset and what a catalog must find in it."""

    root: Path
    metadata_file: Path
    good: list[str]  # images that decode, with known labels
    findings: dict[str, str]  # Finding Labels of every good image
    lists: dict[str, str]  # list of every image with a row
    bad: dict[str, list[str]] = field(default_factory=dict)  # problem key -> image names
    rows: int = 0

    @property
    def present_unverified(self) -> list[str]:
        """Images a catalog without decoding keeps: good ones plus present bad files."""
        kept = {"truncated", "empty", "undecodable", "unsupported_mode"}
        return sorted(self.good + [n for k in kept for n in self.bad.get(k, [])])


def png_bytes(mode: str, seed: int, size: int = 24) -> bytes:
    """A small PNG of the given mode: grey8, rgb, rgba or grey16."""
    rng = np.random.default_rng(seed)
    grey = (np.add.outer(np.arange(size), np.arange(size)) * 4 + rng.integers(0, 40, (size, size))).astype(
        np.uint8
    )
    if mode == "grey8":
        img = grey
    elif mode == "rgb":
        img = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    elif mode == "rgba":
        img = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGRA)
    elif mode == "grey16":
        img = grey.astype(np.uint16) * 257
    else:
        raise ValueError(mode)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def unsupported_mode_png() -> bytes:
    """A PNG whose header declares colour type 5, which no decoder supports."""
    data = bytearray(png_bytes("grey8", 0))
    data[25] = 5
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def build_kaggle_tree(
    root: Path,
    *,
    csv: str = "2017",
    layout: str = "kaggle",
    bad: bool = True,
    lists: bool = True,
    patients: int = 12,
    per_patient: int = 3,
) -> KaggleTree:
    """Write a small dataset: ``csv`` is "2017" (trailing comma), "v2020" or "v2020.gz";
    ``layout`` is "kaggle" (images_00N/images), "flat" (images/) or "subfolders" (images_00N/).
    With ``bad``, add one of each problem a catalog must name."""
    root.mkdir(parents=True, exist_ok=True)

    def folder_for(i: int) -> Path:
        if layout == "kaggle":
            return root / f"images_{1 + i % 2:03d}" / "images"
        if layout == "flat":
            return root / "images"
        if layout == "subfolders":
            return root / f"images_{1 + i % 2:03d}"
        raise ValueError(layout)

    rows: list[tuple[str, str, int, int]] = []  # image, findings, follow-up, patient
    files: dict[str, bytes] = {}
    good: list[str] = []
    findings: dict[str, str] = {}
    n = 0
    for p in range(1, patients + 1):
        for k in range(per_patient):
            name = f"{p:08d}_{k:03d}.png"
            text = FINDINGS[n % len(FINDINGS)]
            rows.append((name, text, k, p))
            files[name] = png_bytes(MODES[n % len(MODES)], n)
            good.append(name)
            findings[name] = text
            n += 1
    test_patients = set(range(patients - patients // 4 + 1, patients + 1))
    tree_bad: dict[str, list[str]] = {}
    if bad:
        b, u = patients + 1, patients + 2
        truncated, empty, missing = (f"{b:08d}_{k:03d}.png" for k in range(3))
        unknown, unsupported, undecodable = (f"{u:08d}_{k:03d}.png" for k in range(3))
        full = png_bytes("grey8", 99)
        files[truncated] = full[: len(full) // 2]
        files[empty] = b""
        files[unknown] = png_bytes("rgb", 98)
        files[unsupported] = unsupported_mode_png()
        files[undecodable] = b"this is not an image at all" * 10
        files[f"{99:08d}_000.png"] = png_bytes("grey8", 97)  # no row
        rows += [(truncated, "Effusion", 0, b), (empty, "No Finding", 1, b), (missing, "Mass", 2, b)]
        rows += [(unknown, "Pneumonitis|Effusion", 0, u), (unsupported, "Nodule", 1, u)]
        rows += [(undecodable, "No Finding", 2, u)]
        rows.append(rows[0])  # a duplicate row
        tree_bad = {
            "truncated": [truncated],
            "empty": [empty],
            "missing": [missing],
            "unknown_label": [unknown],
            "unsupported_mode": [unsupported],
            "undecodable": [undecodable],
            "no_row": [f"{99:08d}_000.png"],
            "duplicate_row": [rows[0][0]],
        }
    for i, (name, data) in enumerate(sorted(files.items())):
        folder = folder_for(i)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)

    lines = []
    for i, (name, text, follow, p) in enumerate(rows):
        age = f"{30 + p:03d}Y" if csv == "2017" and i % 5 == 0 else str(30 + p)
        sex = "MF"[p % 2]
        view = ("PA", "AP")[i % 2]
        lines.append(f"{name},{text},{follow},{p},{age},{sex},{view},2500,2048,0.143,0.143")
    if csv == "2017":
        metadata_file = root / "Data_Entry_2017.csv"
        metadata_file.write_text(HEADER + ",\n" + "\n".join(lines) + "\n")
    elif csv == "v2020":
        metadata_file = root / "Data_Entry_2017_v2020.csv"
        metadata_file.write_text(HEADER + "\n" + "\n".join(lines) + "\n")
    elif csv == "v2020.gz":
        metadata_file = root / "Data_Entry_2017_v2020.csv.gz"
        with gzip.open(metadata_file, "wt") as f:
            f.write(HEADER + "\n" + "\n".join(lines) + "\n")
    else:
        raise ValueError(csv)

    list_of: dict[str, str] = {}
    for name, _, _, p in rows:
        list_of[name] = "test" if p in test_patients else "train_val"
    if lists:
        names = sorted(list_of)
        (root / "train_val_list.txt").write_text(
            "".join(f"{x}\n" for x in names if list_of[x] == "train_val")
        )
        (root / "test_list.txt").write_text("".join(f"{x}\n" for x in names if list_of[x] == "test"))
    return KaggleTree(
        root=root,
        metadata_file=metadata_file,
        good=good,
        findings=findings,
        lists=list_of if lists else {},
        bad=tree_bad,
        rows=len(rows),
    )


@pytest.fixture
def make_kaggle_tree(tmp_path: Path) -> Callable[..., KaggleTree]:
    """Factory: ``make_kaggle_tree(name="x", csv=..., layout=..., bad=..., lists=...)``."""

    def make(name: str = "nih", **options: object) -> KaggleTree:
        return build_kaggle_tree(tmp_path / name, **options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def kaggle_tree(make_kaggle_tree: Callable[..., KaggleTree]) -> KaggleTree:
    """The 2017 CSV (trailing comma), Kaggle folders, every mode, one of each bad file."""
    return make_kaggle_tree()


@pytest.fixture
def nih_sample() -> Path:
    """The real 707-image NIH sample in ../shared/data; skipped when absent."""
    if not (NIH_SAMPLE / "Data_Entry_2017.csv").is_file():
        pytest.skip(f"real NIH sample not available at {NIH_SAMPLE} (only beside the project checkout)")
    return NIH_SAMPLE


@dataclass
class RawSample:
    """What a real sample's files say, read with the csv module alone (not with cxrzoo), so
    tests hold for any sample in the Kaggle layout, not just the one beside this checkout."""

    images: set[str]  # rows whose PNG is on disk
    patients: set[str]
    lists: dict[str, set[str]]  # train_val / test -> image names
    positives: dict[str, dict[str, int]]  # list -> label -> count


def read_raw_sample(root: Path) -> RawSample:
    import csv

    on_disk = {p.name for p in root.rglob("*.png")}
    lists = {
        name: {line.strip() for line in (root / f"{name}_list.txt").read_text().splitlines() if line.strip()}
        for name in ("train_val", "test")
    }
    images, patients = set(), set()
    positives: dict[str, dict[str, int]] = {name: {} for name in lists}
    with open(root / "Data_Entry_2017.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = row["Image Index"]
            if name not in on_disk:
                continue
            images.add(name)
            patients.add(str(int(row["Patient ID"])))
            for list_name, members in lists.items():
                if name in members:
                    for label in row["Finding Labels"].split("|"):
                        counts = positives[list_name]
                        counts[label] = counts.get(label, 0) + 1
    return RawSample(images, patients, lists, positives)


@pytest.fixture
def nih_raw(nih_sample: Path) -> RawSample:
    return read_raw_sample(nih_sample)


@pytest.fixture
def nih_metadata() -> Path:
    """NIH's metadata for all 112,120 images in ../shared/data; skipped when absent."""
    if not NIH_METADATA.is_file():
        pytest.skip(f"NIH metadata not available at {NIH_METADATA} (only beside the project checkout)")
    return NIH_METADATA


@pytest.fixture
def cxrzoo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $CXRZOO_HOME so caches and materialised data never touch the user's."""
    home = tmp_path / "cxrzoo-home"
    monkeypatch.setenv("CXRZOO_HOME", str(home))
    return home


@pytest.fixture
def install_copy(tmp_path: Path) -> Callable[[Path], Path]:
    """``install_copy(package_folder)``: a non-editable ``pip install --target`` of a copy of the
    folder (so setuptools' build/ and egg-info never land in the checkout); returns the target."""
    import shutil
    import subprocess
    import sys

    def install(folder: Path) -> Path:
        site = tmp_path / "site"
        source = tmp_path / folder.name
        shutil.copytree(
            folder, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests")
        )
        pip = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--target",
                str(site),
                str(source),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert pip.returncode == 0, pip.stderr
        return site

    return install
