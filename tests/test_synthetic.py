"""The phantom generator: determinism, label sampling, the Kaggle layout, and visible findings."""

from __future__ import annotations

import re
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import gaussian_filter
from sklearn.linear_model import Ridge
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from cxrzoo.data.io import read_image
from cxrzoo.data.synthetic import (
    DEFAULT_PREVALENCE,
    draw_phantom,
    generate,
    resolve_prevalence,
    sample_labels,
    write_kaggle_layout,
)
from cxrzoo.errors import DataError
from cxrzoo.labels import LABELS, NIH_PREVALENCE, NO_FINDING

# Column names as pandas reads NIH's header, whose bracketed commas split two columns each.
NIH_COLUMNS = [
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
]


# ----------------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes() -> None:
    a_images, a_labels = generate(12, size=64, seed=3)
    b_images, b_labels = generate(12, size=64, seed=3)
    assert a_images.dtype == np.uint8 and a_images.shape == (12, 64, 64)
    assert a_labels.dtype == np.uint8 and a_labels.shape == (12, len(LABELS))
    assert a_images.tobytes() == b_images.tobytes()
    assert np.array_equal(a_labels, b_labels)


def test_different_seed_differs() -> None:
    a_images, a_labels = generate(12, size=64, seed=3)
    b_images, b_labels = generate(12, size=64, seed=4)
    assert not np.array_equal(a_images, b_images)
    assert not np.array_equal(a_labels, b_labels)


def test_images_do_not_depend_on_n() -> None:
    short_images, short_labels = generate(10, size=64, seed=5)
    long_images, long_labels = generate(20, size=64, seed=5)
    assert np.array_equal(short_images, long_images[:10])
    assert np.array_equal(short_labels, long_labels[:10])


def test_generate_honours_prevalence_and_size() -> None:
    images, labels = generate(40, size=32, seed=0, prevalence={"Mass": 1.0, "Hernia": 0.0})
    assert images.shape == (40, 32, 32)
    assert labels[:, LABELS.index("Mass")].all()
    assert not labels[:, LABELS.index("Hernia")].any()
    assert generate(0, size=64)[0].shape == (0, 64, 64)


def test_draw_phantom_checks_its_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="14"):
        draw_phantom(np.zeros(13, np.uint8), 64, rng)
    with pytest.raises(ValueError, match="size"):
        draw_phantom(np.zeros(14, np.uint8), 16, rng)


@pytest.mark.parametrize("seed", range(5))
def test_phantom_looks_like_a_chest(seed: int) -> None:
    """Dark lungs either side of a bright mediastinum, inside a body brighter than the background."""
    image = draw_phantom(np.zeros(len(LABELS), np.uint8), 128, np.random.default_rng(seed)).astype(float)
    lungs = max(image[35:60, 25:45].mean(), image[35:60, 83:103].mean())
    mediastinum, abdomen, corner = image[20:60, 60:68].mean(), image[112:, 40:88].mean(), image[:6, :6].mean()
    assert lungs + 30 < mediastinum
    assert lungs + 30 < abdomen
    assert corner + 30 < abdomen


# ----------------------------------------------------------------------------------------------
# Prevalence
# ----------------------------------------------------------------------------------------------


def test_default_prevalence_keeps_nih_ranking_ends() -> None:
    assert list(DEFAULT_PREVALENCE) == list(LABELS)
    assert min(DEFAULT_PREVALENCE, key=DEFAULT_PREVALENCE.get) == "Hernia"
    assert max(DEFAULT_PREVALENCE, key=DEFAULT_PREVALENCE.get) == "Infiltration"
    assert all(p >= 0.03 for p in DEFAULT_PREVALENCE.values())


@pytest.mark.parametrize("spec", [None, "default", "nih", "uniform:0.25"])
def test_sampled_labels_follow_prevalence(spec: str | None) -> None:
    prevalence = resolve_prevalence(spec)
    n = 3000
    labels = sample_labels(n, np.random.default_rng(7), prevalence)
    assert labels.dtype == np.uint8 and labels.shape == (n, len(LABELS))
    assert set(np.unique(labels)) <= {0, 1}
    for k, name in enumerate(LABELS):
        p = prevalence[name]
        tolerance = 4 * np.sqrt(p * (1 - p) / n) + 1e-9
        assert abs(labels[:, k].mean() - p) <= tolerance, (name, labels[:, k].mean(), p)
    if spec in (None, "default"):
        assert labels.sum(0).argmin() == LABELS.index("Hernia")
        assert (labels.sum(1) >= 2).any()  # several findings on one image


def test_resolve_prevalence_forms() -> None:
    assert resolve_prevalence(None) == DEFAULT_PREVALENCE
    assert resolve_prevalence(" Default ") == DEFAULT_PREVALENCE
    assert resolve_prevalence("nih") == pytest.approx(dict(NIH_PREVALENCE))
    assert resolve_prevalence("uniform:0.1") == dict.fromkeys(LABELS, 0.1)
    mixed = resolve_prevalence({"Hernia": 0.5})
    assert mixed["Hernia"] == 0.5
    assert mixed["Mass"] == DEFAULT_PREVALENCE["Mass"]
    resolve_prevalence(None)["Mass"] = 0.0  # a copy: the default stays untouched
    assert DEFAULT_PREVALENCE["Mass"] > 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"Hernai": 0.1}, "Hernai"),
        ({"Mass": 1.5}, r"'Mass'.*1\.5"),
        ({"Nodule": -0.1}, r"'Nodule'.*-0\.1"),
        ({"Edema": float("nan")}, "Edema"),
        ({"Edema": "lots"}, "Edema"),
        ("uniform:2", "2"),
        ("uniform:x", "x"),
        ("bogus", "bogus"),
    ],
)
def test_resolve_prevalence_errors_name_the_problem(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_prevalence(spec)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Kaggle layout
# ----------------------------------------------------------------------------------------------


def test_write_kaggle_layout(tmp_path) -> None:
    n, size, seed = 25, 64, 11
    root = write_kaggle_layout(tmp_path / "nih", n, size=size, seed=seed, test_fraction=0.2, progress=True)
    assert root == tmp_path / "nih"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nih"]  # no temporary folder left behind

    header = (root / "Data_Entry_2017.csv").read_text().splitlines()[0]
    assert header == (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
    )
    table = pd.read_csv(root / "Data_Entry_2017.csv")
    assert list(table.columns) == NIH_COLUMNS
    assert len(table) == n and table["Image Index"].is_unique
    for name, patient, follow_up in zip(table["Image Index"], table["Patient ID"], table["Follow-up #"]):
        assert re.fullmatch(r"\d{8}_\d{3}\.png", name)
        assert name == f"{patient:08d}_{follow_up:03d}.png"
    assert table.groupby("Patient ID").size().max() == 2
    assert table["Patient Age"].between(20, 85).all()
    assert set(table["Patient Gender"]) <= {"M", "F"}
    assert set(table["View Position"]) <= {"PA", "AP"}
    assert (table.groupby("Patient ID")["Patient Age"].nunique() == 1).all()

    # The files are exactly what generate() draws, and the CSV names their findings.
    images, labels = generate(n, size=size, seed=seed)
    for i, row in table.iterrows():
        expected = "|".join(LABELS[k] for k in np.flatnonzero(labels[i])) or NO_FINDING
        assert row["Finding Labels"] == expected
        decoded = read_image(root / "images_001" / "images" / row["Image Index"])
        assert decoded.shape == (size, size)
        assert np.array_equal(decoded, images[i])

    train = (root / "train_val_list.txt").read_text().split()
    test = (root / "test_list.txt").read_text().split()
    assert sorted(train + test) == sorted(table["Image Index"])
    patient_of = dict(zip(table["Image Index"], table["Patient ID"]))
    train_patients, test_patients = {patient_of[x] for x in train}, {patient_of[x] for x in test}
    assert not train_patients & test_patients
    assert len(test_patients) == round(0.2 * (len(train_patients) + len(test_patients)))


def test_write_kaggle_layout_refuses_non_empty_folder(tmp_path) -> None:
    target = tmp_path / "nih"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="did not write"):
        write_kaggle_layout(target, 3, size=32)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nih"]


def test_write_kaggle_layout_replaces_an_earlier_synthetic_set(tmp_path) -> None:
    target = write_kaggle_layout(tmp_path / "nih", 4, size=32, seed=0)
    write_kaggle_layout(target, 6, size=32, seed=1)
    table = pd.read_csv(target / "Data_Entry_2017.csv")
    assert len(table) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nih"]  # no temporary left beside it


def test_write_kaggle_layout_into_empty_folder(tmp_path) -> None:
    target = tmp_path / "nih"
    target.mkdir()
    write_kaggle_layout(target, 5, size=32, images_per_patient=1, test_fraction=0.4)
    assert len((target / "test_list.txt").read_text().split()) == 2
    assert len(list((target / "images_001" / "images").glob("*.png"))) == 5


# ----------------------------------------------------------------------------------------------
# Visibility: a simple classifier must find every finding
# ----------------------------------------------------------------------------------------------

MIN_AUROC = 0.75
_POOL = 8  # grid cells per side for the pooled filter responses


def _pool(a: np.ndarray, cells: int, how: str) -> np.ndarray:
    n, h, w = a.shape
    blocks = a.reshape(n, cells, h // cells, cells, w // cells)
    return (blocks.mean(axis=(2, 4)) if how == "mean" else blocks.max(axis=(2, 4))).reshape(n, -1)


def _top_mean(a: np.ndarray, fraction: float) -> np.ndarray:
    flat = a.reshape(len(a), -1)
    k = max(1, int(flat.shape[1] * fraction))
    return np.partition(flat, -k, axis=1)[:, -k:].mean(1)


def _features(images: np.ndarray) -> np.ndarray:
    """Cheap generic features: a coarse picture plus pooled band-pass and edge responses.

    Nothing here knows about any finding: blob responses at a ladder of scales, pooled on a grid
    and over the whole image, are what a linear model can separate the findings with.
    """
    x = images.astype(np.float32) / 255.0
    # Per-image standardisation: exposure and contrast carry no label.
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / (x.std(axis=(1, 2), keepdims=True) + 1e-3)
    scales = [0.7 * 1.6**k for k in range(6)]
    blurred = [gaussian_filter(x, (0, s, s), mode="nearest") for s in scales]
    bands = [fine - coarse for fine, coarse in pairwise(blurred)]  # differences of Gaussians
    gy, gx = np.gradient(blurred[0], axis=(1, 2))
    columns = [
        _pool(x, 2 * _POOL, "mean"),
        _pool(np.abs(bands[0]), _POOL, "mean"),
        _pool(bands[0], _POOL, "max"),
        _pool(bands[2], _POOL, "max"),
        _pool(np.abs(bands[2]), _POOL, "mean"),
        _pool(np.abs(gx), _POOL, "mean"),
        _pool(np.abs(gy), _POOL, "mean"),
    ]
    summary = []
    for band in [*bands, np.hypot(gx, gy)]:
        summary += [
            _top_mean(band, 0.002),
            _top_mean(band, 0.01),
            _top_mean(band, 0.05),
            np.abs(band).mean((1, 2)),
        ]
    return np.concatenate([*columns, np.stack(summary, axis=1)], axis=1)


@pytest.fixture(scope="module")
def probe_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features and labels of 1,500 training and 600 held-out phantoms at 64 px."""
    train_images, train_labels = generate(1500, size=64, seed=1, prevalence="uniform:0.25")
    test_images, test_labels = generate(600, size=64, seed=2, prevalence="uniform:0.25")
    scaler = StandardScaler().fit(_features(train_images))
    return (
        scaler.transform(_features(train_images)),
        train_labels,
        scaler.transform(_features(test_images)),
        test_labels,
    )


def _held_out_auroc(probe_data, train_labels: np.ndarray) -> dict[str, float]:
    train_x, _, test_x, test_labels = probe_data
    scores = Ridge(alpha=100.0).fit(train_x, train_labels.astype(np.float64)).predict(test_x)
    return {name: roc_auc_score(test_labels[:, k], scores[:, k]) for k, name in enumerate(LABELS)}


def test_every_finding_is_visible_to_a_linear_probe(probe_data) -> None:
    auroc = _held_out_auroc(probe_data, probe_data[1])
    report = ", ".join(f"{name} {value:.3f}" for name, value in auroc.items())
    weak = [name for name, value in auroc.items() if value < MIN_AUROC]
    assert not weak, f"held-out AUROC below {MIN_AUROC} for {weak}: {report}"


def test_shuffled_labels_teach_nothing(probe_data) -> None:
    """The probe is not trivially right: with the training labels shuffled it is at chance."""
    shuffled = probe_data[1][np.random.default_rng(0).permutation(len(probe_data[1]))]
    auroc = _held_out_auroc(probe_data, shuffled)
    assert 0.4 < np.mean(list(auroc.values())) < 0.6, auroc
