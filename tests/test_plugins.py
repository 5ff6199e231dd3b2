"""Plugin loading: entry points, isolation of broken plugins, allow/block lists."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

from cxrzoo import hookimpl, plugins

ROOT = Path(__file__).resolve().parents[1]
FOUR = {"advanced_resnet", "chest_xray_attention", "rare_disease", "ensemble"}


def run_cli(
    *args: str, env_extra: dict | None = None, pythonpath: Path | None = None
) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "cxrzoo", *args], capture_output=True, text=True, env=env, timeout=120
    )


def fake_distribution(site: Path, dist: str, module: str, source: str) -> None:
    """An installed distribution as importlib.metadata sees it: dist-info + entry point."""
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[cxrzoo]\n{module} = {module}\n")


def test_broken_plugin_does_not_break_list_and_is_reported(tmp_path):
    fake_distribution(tmp_path, "cxrzoo-broken", "broken_plugin", "raise RuntimeError('boom on import')\n")
    listed = run_cli("list", "--kind", "model", "--json", pythonpath=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert {m["name"] for m in json.loads(listed.stdout)} >= FOUR
    assert "broken_plugin" in listed.stderr  # a one-line hint, not a traceback
    assert "Traceback" not in listed.stderr

    report = run_cli("plugins", "--json", pythonpath=tmp_path)
    assert report.returncode == 0, report.stderr
    broken = {p["name"]: p for p in json.loads(report.stdout)}["broken_plugin"]
    assert broken["distribution"] == "cxrzoo-broken" and broken["version"] == "0.3"
    assert "boom on import" in broken["error"]
    text = run_cli("plugins", pythonpath=tmp_path).stdout
    assert "broken_plugin" in text and "boom on import" in text


def test_block_and_allow_lists(tmp_path):
    blocked = run_cli(
        "list", "--kind", "model", "--json", env_extra={"CXRZOO_BLOCK_PLUGINS": "cxrzoo-ensemble"}
    )
    assert {m["name"] for m in json.loads(blocked.stdout)} == FOUR - {"ensemble"}
    only = run_cli("list", "--json", env_extra={"CXRZOO_PLUGINS": "rare_disease"})
    data = json.loads(only.stdout)
    assert {m["name"] for m in data["model"]} == {"rare_disease"}
    assert data["transform"], "the core's own plugins always load"


def test_installed_example_plugin_is_listed(tmp_path):
    site = tmp_path / "site"
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
            str(ROOT / "examples" / "cxrzoo-example-plugin"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    listed = run_cli("list", "--kind", "model", "--json", pythonpath=site)
    assert listed.returncode == 0, listed.stderr
    models = {m["name"]: m["source"] for m in json.loads(listed.stdout)}
    assert models["example_cnn"] == "cxrzoo-example-plugin"
    # It builds, trains a step and saves like a built-in.
    code = (
        "import cxrzoo, torch, tempfile\n"
        "from cxrzoo.testing import check_model\n"
        "check_model('example_cnn')\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.stdout.strip().endswith("ok"), out.stderr


def test_hook_error_is_isolated_and_rolled_back():
    module = types.ModuleType("half_broken")

    @hookimpl
    def register_models(register):
        register("half_model", object)
        raise ValueError("second model failed")

    module.register_models = register_models
    info = plugins.register_plugin(module, "half-broken")
    try:
        assert "register_models failed" in info.error and "second model failed" in info.error
        assert "half_model" not in plugins.models
        assert set(plugins.models.names()) >= FOUR
    finally:
        plugins.unregister_plugin("half-broken")


def test_plugin_registering_a_taken_name_is_reported_with_both_sources():
    module = types.ModuleType("dup")

    @hookimpl
    def register_models(register):
        register("rare_disease", object)

    module.register_models = register_models
    info = plugins.register_plugin(module, "dup-plugin")
    try:
        assert "cxrzoo-rare-disease" in info.error and "dup-plugin" in info.error
        assert plugins.models.entry("rare_disease").source == "cxrzoo-rare-disease"
    finally:
        plugins.unregister_plugin("dup-plugin")


def test_in_process_plugin_registers_and_unregisters_every_kind():
    module = types.ModuleType("extra")

    @hookimpl
    def register_metrics(register):
        register("always_one", lambda y, s, t=None: 1.0, description="test metric")

    module.register_metrics = register_metrics
    info = plugins.register_plugin(module, "extra-metrics")
    assert info.registered == {"metric": ["always_one"]}
    assert "always_one" in plugins.metrics
    plugins.unregister_plugin("extra-metrics")
    assert "always_one" not in plugins.metrics


def test_misnamed_hook_is_an_invalid_plugin():
    module = types.ModuleType("typo")

    @hookimpl
    def register_model(register):  # missing "s": pluggy rejects it
        pass

    module.register_model = register_model
    info = plugins.register_plugin(module, "typo-plugin")
    try:
        assert info.error and "invalid plugin" in info.error
    finally:
        plugins.unregister_plugin("typo-plugin")
