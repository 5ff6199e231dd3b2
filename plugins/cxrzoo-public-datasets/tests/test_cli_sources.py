"""The command line with several sources: detection, --dataset forcing, --data-option, phantoms as CheXpert."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cxrzoo.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    for layout in ("nih14", "chexpert"):
        result = run(
            "data",
            "synth",
            str(root / layout),
            "--n",
            "16",
            "--size",
            "32",
            "--seed",
            "5",
            "--layout",
            layout,
        )
        assert result.exit_code == 0, result.output
        assert f"in the {layout} layout" in result.output
    return root


def test_synth_chexpert_layout_has_uncertain_and_blank_labels_with_known_answers(phantoms):
    from cxrzoo.data.synthetic import generate

    train = pd.read_csv(phantoms / "chexpert" / "train.csv", dtype=str, keep_default_na=False)
    valid = pd.read_csv(phantoms / "chexpert" / "valid.csv", dtype=str, keep_default_na=False)
    assert list(train.columns[:5]) == ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"]
    assert (
        train["Path"]
        .str.match(r"^CheXpert-v1\.0-small/train/patient\d{5}/study\d+/view1_frontal\.jpg$")
        .all()
    )
    codes = set(train.iloc[:, 5:].to_numpy().ravel())
    assert {"1.0", "0.0", "-1.0", ""} <= codes
    assert set(valid.iloc[:, 5:].drop(columns=["Lung Opacity", "Fracture"]).to_numpy().ravel()) <= {
        "1.0",
        "0.0",
        "",
    }
    assert (train[["Lung Opacity", "Fracture", "Support Devices"]] == "").all().all()
    _, labels = generate(16, size=32, seed=5)
    both = pd.concat([train, valid]).reset_index(drop=True)
    index = both["Path"].str.extract(r"patient(\d+)/study(\d+)").astype(int)
    order = ((index[0] - 1) * 2 + index[1] - 1).to_numpy()
    effusion = both["Pleural Effusion"].to_numpy()
    truth = labels[order, 2]  # Effusion in NIH's order
    assert ((effusion == "1.0") <= (truth == 1)).all() and ((effusion == "0.0") <= (truth == 0)).all()
    # the images are the same drawings
    from cxrzoo.data.io import read_image

    first = read_image(phantoms / "chexpert" / both["Path"][0].split("/", 1)[1])
    nih = read_image(
        phantoms / "nih14" / "images_001" / "images" / f"{index[0][0]:08d}_{index[1][0] - 1:03d}.png"
    )
    assert np.abs(first.astype(int) - nih.astype(int)).mean() < 3


def test_catalog_detects_each_layout(phantoms):
    for layout in ("nih14", "chexpert"):
        doc = json.loads(run("data", "catalog", str(phantoms / layout), "--json").output)
        assert doc["images"] == 16 and doc["problem_count"] == 0
    forced = run("data", "catalog", "--data", str(phantoms / "chexpert"), "--dataset", "nih14")
    assert forced.exit_code == 3 and "Data_Entry_2017" in forced.output


def test_split_of_two_sources(phantoms):
    result = run(
        "data", "split", "--data", str(phantoms / "nih14"), "--data", str(phantoms / "chexpert"), "--json"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert sum(s["images"] for s in doc["splits"].values()) == 32
    assert doc["splits"]["train"]["sources"].keys() == {"nih14", "chexpert"}
    assert (
        "Lung Opacity" in doc["splits"]["train"]["labels"]
        and "Infiltration" in doc["splits"]["train"]["labels"]
    )
    assert doc["splits"]["train"]["unknown"]["Infiltration"] > 0  # CheXpert's rows do not know it
    assert "nih14: the official test list" in doc["test_source"]


def test_data_option_reaches_the_source_and_bad_values_are_named(phantoms):
    chex = str(phantoms / "chexpert")
    ignore = json.loads(run("data", "split", chex, "--json").output)
    ones = json.loads(run("data", "split", chex, "--data-option", "uncertain=ones", "--json").output)
    count = lambda doc: sum(s["labels"]["Effusion"] for s in doc["splits"].values())  # noqa: E731
    assert count(ones) > count(ignore)
    bad = run("data", "catalog", chex, "--data-option", "uncertain=maybe")
    assert bad.exit_code == 2 and "uncertain='maybe'" in bad.output and "ignore, ones, zeros" in bad.output
    unknown = run("data", "catalog", str(phantoms / "nih14"), "--data", chex, "--data-option", "vote=any")
    assert unknown.exit_code == 2 and "vote" in unknown.output


def test_unknown_folder_names_the_candidates(tmp_path):
    result = run("data", "catalog", str(tmp_path))
    assert result.exit_code == 3 and "--dataset NAME" in result.output and "chexpert" in result.output


@pytest.mark.parametrize("name", sorted(__import__("cxrzoo_public_datasets.testing").testing.WRITERS))
def test_train_and_evaluate_one_epoch_on_each_reader(tmp_path, monkeypatch, name):
    from cxrzoo_public_datasets.testing import WRITERS

    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "home"))
    mini = WRITERS[name](tmp_path / name)
    args = ["--epochs", "1", "--image-size", "32", "--recipe", "quick", "--set", "backbone=test_resnet"]
    trained = run(
        "train", "chest_xray_attention", "--data", str(mini.root), *args, "--no-progress", "--name", "m"
    )
    assert trained.exit_code == 0, trained.output
    assert "Saved to" in trained.output
    evaluated = run("evaluate", "m", "--bootstrap", "0", "--no-progress", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    doc = json.loads(evaluated.output[evaluated.output.index("{") :])
    assert doc["data"]["dataset"] == name and doc["data"]["datasets"] == [name]


def test_train_and_evaluate_on_nih_and_chexpert_phantoms_together(phantoms, tmp_path, monkeypatch):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path / "home"))
    data = ["--data", str(phantoms / "nih14"), "--data", str(phantoms / "chexpert")]
    args = ["--epochs", "1", "--image-size", "32", "--recipe", "quick", "--set", "backbone=test_resnet"]
    trained = run("train", "chest_xray_attention", *data, *args, "--no-progress", "--name", "both")
    assert trained.exit_code == 0, trained.output
    evaluated = run("evaluate", "both", "--bootstrap", "0", "--no-progress", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    doc = json.loads(evaluated.output[evaluated.output.index("{") :])
    assert doc["data"]["datasets"] == ["nih14", "chexpert"] and len(doc["data"]["data"]) == 2
