import json

from click.testing import CliRunner

from cxrzoo.cli import main


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_list_shows_every_kind_with_sources():
    result = invoke("list")
    assert result.exit_code == 0
    for name in (
        "advanced_resnet",
        "chest_xray_attention",
        "rare_disease",
        "ensemble",
        "nih14",
        "synthetic",
        "clahe",
        "auroc",
    ):
        assert name in result.output
    assert "cxrzoo-rare-disease" in result.output


def test_list_pattern_kind_and_json():
    data = json.loads(invoke("list", "*resnet*", "--kind", "model", "--json").output)
    names = [m["name"] for m in data]
    assert "advanced_resnet" in names and all("resnet" in n for n in names)
    assert data[0]["source"] == "cxrzoo-advanced-resnet"


def test_info_describes_a_model():
    data = json.loads(invoke("info", "advanced_resnet", "--json").output)
    assert data["kind"] == "model" and data["config"]["backbone"] == "resnet50"
    assert data["config"]["attention"] is True and data["config"]["fpn"] is True


def test_unknown_model_is_one_line_with_suggestions():
    result = CliRunner().invoke(main, ["info", "rare_diseas"])
    assert result.exit_code == 2  # a user error
    assert "Did you mean 'rare_disease'?" in result.output
    assert "Traceback" not in result.output


def test_plugins_lists_each_distribution():
    data = json.loads(invoke("plugins", "--json").output)
    dists = {p["distribution"] for p in data}
    assert {
        "cxrzoo",
        "cxrzoo-advanced-resnet",
        "cxrzoo-chest-attention",
        "cxrzoo-rare-disease",
        "cxrzoo-ensemble",
    } <= dists
    assert all(p["version"] for p in data)
    rare = next(p for p in data if p["distribution"] == "cxrzoo-rare-disease")
    assert rare["registered"] == {"model": ["rare_disease"]} and rare["error"] is None


def test_train_rejects_unknown_settings_naming_them(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path))
    result = CliRunner().invoke(main, ["train", "chest_xray_attention", "--set", "atention=false"])
    assert result.exit_code == 2
    assert "'atention'" in result.output and "attention" in result.output
