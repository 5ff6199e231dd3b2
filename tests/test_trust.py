"""When a model should not be trusted: the out-of-distribution gate, guaranteed thresholds,
per-image uncertainty and recalibration on a new site."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import binom, norm
from sklearn.metrics import roc_auc_score

import cxrzoo
from cxrzoo import store
from cxrzoo.cli import main
from cxrzoo.conformal import Target, guaranteed_threshold
from cxrzoo.data.io import read_image
from cxrzoo.data.synthetic import generate
from cxrzoo.ood import fit_detector, image_features
from cxrzoo.testing import odd_inputs, tiny_model

pytestmark = pytest.mark.xdist_group("trust")
#: Every registered model: the gate works on any model's features, imported networks included.
MODELS = sorted(cxrzoo.list_models())


def run(*args: object, code: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def model_at(size: int, name: str = "chest_xray_attention"):
    tiny = tiny_model(name, seed=0)
    model = type(tiny)(tiny.config.replace(image_size=size))
    model.architecture = name
    model.load_state_dict(type(tiny)(tiny.config.replace(image_size=size)).state_dict())
    return model


def _separation(
    model, detector, inside: list[np.ndarray], odd: dict[str, list[np.ndarray]]
) -> dict[str, float]:
    scores_in = detector.score(*image_features(model, inside))
    out = {}
    for kind, images in odd.items():
        s = detector.score(*image_features(model, images))
        out[kind] = roc_auc_score(np.r_[np.zeros(len(scores_in)), np.ones(len(s))], np.r_[scores_in, s])
    out["flagged_inside"] = float(np.mean(scores_in > detector.threshold))
    return out


def _flag_bound(n: int, rate: float) -> float:
    """The share of n in-distribution images the gate may flag, allowing for chance (99%)."""
    return binom.ppf(0.99, n, rate) / n


@pytest.mark.parametrize("name", MODELS)
def test_the_gate_separates_phantoms_from_inputs_that_are_not_chest_radiographs(name):
    images, _ = generate(400, size=64, seed=0)
    model = tiny_model(name, seed=0)
    detector = fit_detector(model, list(images[:250]), list(images[250:330]), rate=0.05)
    inside = list(images[330:])
    result = _separation(model, detector, inside, odd_inputs(inside, 64))
    for kind, auroc in result.items():
        if kind != "flagged_inside":
            assert auroc >= 0.95, (kind, result)
    assert result["flagged_inside"] <= _flag_bound(len(inside), 0.05), result


@pytest.mark.realdata
def test_the_gate_fitted_on_real_nih_images_flags_what_is_not_a_frontal_radiograph(nih_sample):
    def read(name: str) -> list[Path]:
        return [nih_sample / "images_001" / "images" / n for n in (nih_sample / name).read_text().split()]

    train_val, test = read("train_val_list.txt"), read("test_list.txt")
    model = model_at(64)
    rate = 0.05
    detector = fit_detector(model, train_val[:450], train_val[450:], rate=rate)
    inside = [read_image(p) for p in test]
    result = _separation(model, detector, inside, odd_inputs(inside, 64))
    for kind, auroc in result.items():
        if kind != "flagged_inside":
            assert auroc >= 0.95, (kind, result)
    assert result["flagged_inside"] <= _flag_bound(len(inside), rate), result


# -- the gate on the command line --------------------------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A small labelled site in NIH's layout, and a model in a private store."""
    from cxrzoo.data.synthetic import write_kaggle_layout

    root = tmp_path_factory.mktemp("trust")
    data = write_kaggle_layout(root / "site-a", 240, size=32, seed=3, images_per_patient=1)
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXRZOO_HOME", str(home))
        model = model_at(32)
        model.set_thresholds([0.5] * len(model.labels))
        store.save(model, "m")
        yield {"data": data, "home": home, "root": root}


def test_calibrate_ood_writes_a_new_sealed_entry_and_predict_flags_or_rejects(site, tmp_path):
    result = run("calibrate", "m", "--data", site["data"], "--ood", "--rate", "0.1")
    assert "store name 'm-site-a'" in result.output
    folder = store.model_path("m-site-a")
    doc = json.loads((folder / store.CONFIG_NAME).read_text())
    assert doc["ood"]["false_rejection_rate"] == 0.1 and (folder / doc["ood"]["file"]).is_file()
    assert "ood" not in json.loads((store.model_path("m") / store.CONFIG_NAME).read_text())  # NAME untouched
    images = tmp_path / "images"
    images.mkdir()
    phantom = read_image(next((site["data"] / "images_001" / "images").iterdir()))
    cv2.imwrite(str(images / "ok.png"), phantom)
    cv2.imwrite(str(images / "inverted.png"), 255 - phantom)
    cv2.imwrite(str(images / "blank.png"), np.full_like(phantom, 90))

    out = tmp_path / "flag.csv"
    run("predict", "m-site-a", images, "--out", out)  # default: flag
    table = pd.read_csv(out, keep_default_na=False).set_index("path")
    assert list(table.columns[-4:]) == ["ood_score", "in_distribution", "positives", "error"]
    assert not table.loc[str(images / "blank.png"), "in_distribution"]
    assert not table.loc[str(images / "inverted.png"), "in_distribution"]
    assert (
        table.loc[str(images / "ok.png"), "ood_score"] < table.loc[str(images / "inverted.png"), "ood_score"]
    )

    rejected = run("predict", "m-site-a", images, "--ood", "reject", "--json", code=1)
    shown = json.loads(rejected.stdout)
    assert {Path(r["image"]).name for r in shown["failed"]} >= {"blank.png", "inverted.png"}
    assert all("out of distribution" in r["error"] for r in shown["failed"])

    off = tmp_path / "off.csv"
    run("predict", "m-site-a", images, "--out", off, "--ood", "off")
    assert "ood_score" not in pd.read_csv(off).columns
    # A model without a gate predicts as before: no new columns, and reject is refused.
    plain = tmp_path / "plain.csv"
    run("predict", "m", images, "--out", plain)
    assert "ood_score" not in pd.read_csv(plain).columns
    assert "no out-of-distribution gate" in run("predict", "m", images, "--ood", "reject", code=2).stderr


def test_assess_gives_the_gate_and_the_uncertainty_in_python(site):
    run("calibrate", "m", "--data", site["data"], "--ood", "--name", "m-assess")
    model = cxrzoo.load("m-assess")
    phantom = read_image(next((site["data"] / "images_001" / "images").iterdir()))
    good, blank = model.assess([phantom, np.full_like(phantom, 90)])
    assert set(good) == {"probabilities", "positive", "uncertainty", "ood_score", "in_distribution"}
    assert good["probabilities"] == pytest.approx(model.predict([phantom])[0], abs=1e-5)
    assert blank["in_distribution"] is False and blank["ood_score"] > good["ood_score"]
    (alone,) = cxrzoo.load("m").assess(phantom)
    assert "ood_score" not in alone  # no gate: nothing invented


def test_the_exported_graph_carries_the_gate(site, tmp_path):
    run("calibrate", "m", "--data", site["data"], "--ood", "--name", "m-onnx")
    onnx_file = tmp_path / "m.onnx"
    run("export", "m-onnx", "--out", onnx_file)
    images = tmp_path / "images"
    images.mkdir()
    phantom = read_image(next((site["data"] / "images_001" / "images").iterdir()))
    for name, image in {"ok": phantom, "inverted": 255 - phantom, "blank": np.full_like(phantom, 90)}.items():
        cv2.imwrite(str(images / f"{name}.png"), image)
    run("predict", "m-onnx", images, "--out", tmp_path / "torch.csv")
    run("predict", onnx_file, images, "--out", tmp_path / "onnx.csv")
    torch_rows = pd.read_csv(tmp_path / "torch.csv").set_index("path")
    onnx_rows = pd.read_csv(tmp_path / "onnx.csv").set_index("path")
    np.testing.assert_allclose(onnx_rows["ood_score"], torch_rows["ood_score"], rtol=1e-2)
    assert (onnx_rows["in_distribution"] == torch_rows["in_distribution"]).all()
    assert not onnx_rows.loc[str(images / "inverted.png"), "in_distribution"]


def test_a_changed_gate_file_is_refused(site):
    run("calibrate", "m", "--data", site["data"], "--ood", "--name", "m-tampered")
    folder = store.model_path("m-tampered")
    gate = folder / "ood.safetensors"
    data = bytearray(gate.read_bytes())
    data[-1] ^= 1
    gate.write_bytes(bytes(data))
    result = run("predict", "m-tampered", site["data"], code=3)
    assert "ood.safetensors" in result.stderr and "sha256" in result.stderr


def test_uncertainty_is_the_spread_over_ensemble_members_and_mirror_images(site, tmp_path):
    from cxrzoo.inference import predict_stream

    model = store.load_folder(store.model_path("m"))
    image = read_image(next((site["data"] / "images_001" / "images").iterdir()))
    (pred,) = predict_stream(model, [image], uncertainty=True)
    mirrored = model.predict_proba([np.ascontiguousarray(image[:, ::-1])])[0]
    np.testing.assert_allclose(
        pred.details["uncertainty"], np.abs(pred.probabilities - mirrored) / 2, atol=1e-5
    )
    ensemble = tiny_model("ensemble", seed=1)
    (pred,) = predict_stream(ensemble, [image], uncertainty=True)
    members = np.stack([m.predict_proba([image])[0] for m in ensemble.member_models()])
    np.testing.assert_allclose(pred.details["uncertainty"], members.std(0), atol=1e-5)
    out = tmp_path / "u.csv"
    run("predict", "m", site["data"] / "images_001" / "images", "--out", out, "--uncertainty")
    assert {f"uncertainty_{label}" for label in model.labels} <= set(pd.read_csv(out).columns)


def test_evaluate_reports_the_uncertainty_per_image_and_finding(site, tmp_path):
    report = tmp_path / "report"
    run("evaluate", "m", "--data", site["data"], "--bootstrap", "0", "--uncertainty", "--report", report)
    metrics = json.loads((report / "metrics.json").read_text())
    preds = pd.read_csv(report / "predictions.csv")
    assert metrics["uncertainty"]["method"] == "half |p - p(mirror)|"
    for label, mean in metrics["uncertainty"]["mean"].items():
        assert mean == pytest.approx(preds[f"uncertainty_{label}"].mean(), abs=1e-6)
    assert "## Uncertainty" in (report / "report.md").read_text()


# -- guaranteed thresholds ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sensitivity", "specificity"])
def test_the_guarantee_holds_at_the_promised_confidence(kind):
    """Scores whose population sensitivity and specificity at any threshold are known exactly:
    over many calibration sets the guarantee may fail in at most the promised share of them."""
    target = Target(kind, 0.9, 0.9)
    rng = np.random.default_rng(0)
    trials, failures = 400, 0
    for _ in range(trials):
        y = (rng.random(300) < 0.3).astype(float)
        scores = norm.cdf(rng.normal(2 * y, 1))  # positives N(2, 1), negatives N(0, 1), as probabilities
        g = guaranteed_threshold(scores, y, target)
        assert g.guaranteed
        z = norm.ppf(g.threshold)
        truth = 1 - norm.cdf(z - 2) if kind == "sensitivity" else norm.cdf(z)
        failures += truth < target.level
    # The failures are at most Binomial(trials, 1 - confidence); allow for chance at 0.1%.
    assert failures <= binom.ppf(0.999, trials, 1 - target.confidence), failures
    assert failures >= 1  # and the guarantee is tight, not a threshold of 0 for everything


def test_the_guarantee_holds_on_phantoms_over_random_calibration_sets():
    images, labels = generate(3000, size=32, seed=5)
    model = model_at(32)
    probs = model.predict_proba(list(images))
    target = Target("sensitivity", 0.8, 0.9)
    rng = np.random.default_rng(1)
    checked = failures = 0
    for _ in range(100):
        pick = rng.permutation(len(images))
        cal, test = pick[:400], pick[400:]
        for j in range(labels.shape[1]):
            g = guaranteed_threshold(probs[cal, j], labels[cal, j].astype(float), target)
            if not g.guaranteed:
                assert g.cases < target.needed
                continue
            positives = labels[test, j] == 1
            checked += 1
            failures += np.mean(probs[test, j][positives] >= g.threshold) < target.level
    assert checked >= 500
    assert failures <= binom.ppf(0.999, checked, 1 - target.confidence) + 0.05 * checked, (failures, checked)


def test_too_few_positives_are_refused_by_name_with_the_count_needed(site):
    result = run(
        "calibrate", "m", "--data", site["data"], "--target", "sensitivity=0.95", "--name", "m-strict"
    )
    doc = json.loads((store.model_path("m-strict") / store.CONFIG_NAME).read_text())
    per = doc["guarantees"]["per_finding"]
    refused = [k for k, g in per.items() if not g["guaranteed"]]
    assert refused and all("needs at least 45" in per[k]["reason"] for k in refused)
    assert f"{refused[0]:<20} not guaranteed" in result.output
    card = (store.model_path("m-strict") / "README.md").read_text()
    assert "sensitivity ≥ 0.95" in card and "none:" in card


def test_site_recalibration_states_and_checks_its_promise(site, tmp_path):
    from cxrzoo.data.synthetic import write_kaggle_layout

    other = write_kaggle_layout(
        tmp_path / "site-b", 300, size=32, seed=11, images_per_patient=1, test_fraction=0.6
    )
    args = ("calibrate", "m", "--data", site["data"], "--target", "sensitivity=0.8", "--name", "m-sens")
    run(*args)
    assert "--force" in run(*args, code=3).stderr  # an existing entry is not replaced without --force
    recal = store.model_path("m-sens")
    doc = json.loads((recal / store.CONFIG_NAME).read_text())
    g = doc["guarantees"]
    assert g["target"] == "sensitivity" and g["level"] == 0.8 and g["images"] == 240
    shown = json.loads(run("predict", "m-sens", site["data"] / "images_001" / "images", "--json").stdout)
    statements = shown["results"][0]["guarantees"]
    assert any("sensitivity ≥ 0.8 with 90% confidence" in s for s in statements.values())
    report = tmp_path / "report"
    result = run(
        "evaluate", "m-sens", "--data", other, "--bootstrap", "0", "--report", report, "--no-progress"
    )
    assert "guarantee (sensitivity ≥ 0.8 with 90% confidence)" in result.output
    metrics = json.loads((report / "metrics.json").read_text())
    preds = pd.read_csv(report / "predictions.csv")
    truth = pd.read_csv(other / "Data_Entry_2017.csv").set_index("Image Index").loc[preds["image"]]
    for label, row in metrics["guarantees"]["per_finding"].items():
        positives = truth["Finding Labels"].str.contains(label).to_numpy()
        if positives.any():
            achieved = float(np.mean(preds[label].to_numpy()[positives] >= row["threshold"] - 1e-6))
            assert row["achieved"] == pytest.approx(achieved, abs=1e-6)
            assert row["met"] == (achieved >= 0.8)
    assert "## Guarantees" in (report / "report.md").read_text()


def _site(sample: Path, out: Path, patients: set[str]) -> Path:
    """A Kaggle-layout folder holding ``patients``' images of the real sample (linked, not copied)."""
    table = pd.read_csv(sample / "Data_Entry_2017.csv")
    rows = table[table["Patient ID"].astype(str).isin(patients)]
    (out / "images_001" / "images").mkdir(parents=True)
    for name in rows["Image Index"]:
        (out / "images_001" / "images" / name).symlink_to(sample / "images_001" / "images" / name)
    rows.to_csv(out / "Data_Entry_2017.csv", index=False)
    names = sorted(rows["Image Index"])
    held = set(names[::4])  # a quarter of the images as the site's test list (one image per patient mostly)
    by_patient = dict(zip(rows["Image Index"], rows["Patient ID"].astype(str), strict=True))
    held_patients = {by_patient[n] for n in held}
    test = [n for n in names if by_patient[n] in held_patients]
    (out / "test_list.txt").write_text("".join(f"{n}\n" for n in test))
    (out / "train_val_list.txt").write_text("".join(f"{n}\n" for n in names if n not in set(test)))
    return out


@pytest.mark.realdata
def test_site_recalibration_on_the_real_sample_split_into_two_sites_by_patient(
    nih_sample, tmp_path, monkeypatch
):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "home"))
    patients = sorted(pd.read_csv(nih_sample / "Data_Entry_2017.csv")["Patient ID"].astype(str).unique())
    rng = np.random.default_rng(0)
    order = list(rng.permutation(patients))
    site_a = _site(nih_sample, tmp_path / "site-a", set(order[: len(order) // 2]))
    site_b = _site(nih_sample, tmp_path / "site-b", set(order[len(order) // 2 :]))
    model = model_at(64)
    model.set_thresholds([0.5] * len(model.labels))
    store.save(model, "nih")
    result = run("calibrate", "nih", "--data", site_a, "--target", "sensitivity=0.8", "--ood")
    assert "store name 'nih-site-a'" in result.output
    doc = json.loads((store.model_path("nih-site-a") / store.CONFIG_NAME).read_text())
    guaranteed = [k for k, g in doc["guarantees"]["per_finding"].items() if g["guaranteed"]]
    assert guaranteed  # Effusion and Infiltration have enough positives in half the sample
    report = tmp_path / "report"
    run("evaluate", "nih-site-a", "--data", site_b, "--split", "test", "--bootstrap", "0", "--report", report)
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["guarantees"]["per_finding"]) == set(guaranteed)
    for row in metrics["guarantees"]["per_finding"].values():
        assert row["promised"] == 0.8 and (row["achieved"] is None or 0 <= row["achieved"] <= 1)
    assert metrics["ood"]["images"] == metrics["n_images"]
    assert (
        metrics["ood"]["flagged_share"] <= _flag_bound(metrics["n_images"], 0.05) + 0.1
    )  # another site's shift


def test_train_fits_the_gate_and_evaluate_reports_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "home"))
    tiny = [
        "--synthetic-n",
        "120",
        "--recipe",
        "quick",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--no-progress",
    ]
    run("train", "chest_xray_attention", *tiny, "--set", "backbone=test_resnet", "--set", "reduction=4")
    doc = json.loads((store.model_path("chest_xray_attention") / store.CONFIG_NAME).read_text())
    assert doc["ood"]["false_rejection_rate"] == 0.05 and doc["ood"]["fit_images"] > 0
    result = run("evaluate", "chest_xray_attention", "--bootstrap", "0", "--no-progress")
    assert "out of distribution:" in result.output
    run(
        "train",
        "chest_xray_attention",
        *tiny,
        "--set",
        "backbone=test_resnet",
        "--set",
        "ood_rate=0",
        "--name",
        "no-gate",
    )
    assert "ood" not in json.loads((store.model_path("no-gate") / store.CONFIG_NAME).read_text())
    shutil.rmtree(tmp_path / "home", ignore_errors=True)
