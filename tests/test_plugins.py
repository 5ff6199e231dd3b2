"""Plugin loading: entry points, isolation of broken plugins, allow/block lists."""

import importlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

import cxrzoo
from cxrzoo import hookimpl, plugins
from cxrzoo.cli import main
from cxrzoo.registry import PluginLoadError

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
    names = {m["name"] for m in json.loads(blocked.stdout)}
    assert "ensemble" not in names and FOUR - {"ensemble"} <= names
    only = run_cli("list", "--json", env_extra={"CXRZOO_PLUGINS": "rare_disease"})
    data = json.loads(only.stdout)
    assert {m["name"] for m in data["model"]} == {"rare_disease"}
    assert data["transform"], "the core's own plugins always load"


def test_installed_example_plugin_is_listed(tmp_path, install_copy):
    site = install_copy(ROOT / "examples" / "cxrzoo-example-plugin")
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


# -- lazy registration ----------------------------------------------------------------------
LAZY_PLUGIN = """
from cxrzoo import hookimpl

@hookimpl
def register_models(register):
    register("lazy_ok", "{module}.model:Net", description="Imported on first use",
             config="{module}.config:NetConfig", card="{module}:card.md")
    register("lazy_broken", "{module}.broken:Net", description="Its module fails to import")
    register("lazy_missing", "{module}.nowhere:Net", description="Its module does not exist")
"""
LAZY_MODEL = '''
from dataclasses import dataclass
from cxrzoo import ModelConfig, ZooModel
from {module}.config import NetConfig

class Net(ZooModel):
    """A lazily registered model."""
    config_class = NetConfig
'''
LAZY_CONFIG = """
from dataclasses import dataclass
from cxrzoo.config import ModelConfig

@dataclass(frozen=True)
class NetConfig(ModelConfig):
    width: int = 7
"""


def lazy_package(root: Path, module: str) -> Path:
    """A plugin package whose models are registered by import path (one fine, two broken)."""
    package = root / module
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(LAZY_PLUGIN.format(module=module))
    (package / "model.py").write_text(LAZY_MODEL.format(module=module))
    (package / "config.py").write_text(LAZY_CONFIG)
    (package / "broken.py").write_text("import a_dependency_that_is_not_installed_xyz\n")
    (package / "card.md").write_text("# {{ name }}\n\nThe lazy test card.\n")
    return package


@pytest.fixture
def lazy_plugin(tmp_path, monkeypatch):
    module = "cxrzoo_lazy_test_plugin"
    lazy_package(tmp_path, module)
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = importlib.import_module(module)
    info = plugins.register_plugin(imported, "lazy-test-plugin")
    assert info.error is None, info.error
    yield module
    plugins.unregister_plugin("lazy-test-plugin")
    for name in [m for m in sys.modules if m.startswith(module)]:
        del sys.modules[name]


def test_lazy_model_is_imported_on_first_use_only(lazy_plugin):
    entry = plugins.models.entry("lazy_ok")
    assert entry.lazy and not entry.loaded
    assert "lazy_ok" in plugins.models.names() and entry.description == "Imported on first use"
    assert plugins.model_config_class("lazy_ok")().to_dict()["width"] == 7
    assert f"{lazy_plugin}.model" not in sys.modules  # listing and describing import nothing
    model = cxrzoo.create_model("lazy_ok")
    assert f"{lazy_plugin}.model" in sys.modules and entry.loaded
    assert type(model).__name__ == "Net" and model.config.width == 7


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("lazy_broken", "ModuleNotFoundError: No module named 'a_dependency_that_is_not_installed_xyz'"),
        ("lazy_missing", "No module named 'cxrzoo_lazy_test_plugin.nowhere'"),
    ],
)
def test_broken_lazy_model_is_one_line_naming_plugin_and_module(lazy_plugin, name, reason):
    with pytest.raises(PluginLoadError) as info:
        plugins.models.get(name)
    message = str(info.value)
    assert "\n" not in message and reason in message
    assert f"Model {name!r} of plugin 'lazy-test-plugin' cannot be loaded" in message
    assert f"{lazy_plugin}." in message and "cxrzoo plugins --check" in message
    with pytest.raises(PluginLoadError):  # the same answer again, not a half-imported module
        cxrzoo.create_model(name)
    # The others still work, and the failure is reported with the plugin.
    assert "lazy_ok" in plugins.models and cxrzoo.create_model("lazy_ok")
    reported = {i.name: i for i in plugins.plugin_info()}["lazy-test-plugin"]
    assert reported.problems == [message]


def test_cli_with_a_broken_lazy_model(lazy_plugin):
    runner = CliRunner()
    plugins.models.get("lazy_ok")
    with pytest.raises(PluginLoadError):
        plugins.models.get("lazy_broken")
    listed = runner.invoke(main, ["list", "--kind", "model", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {"lazy_ok", "lazy_broken", "lazy_missing"} <= {m["name"] for m in json.loads(listed.output)}

    created = runner.invoke(main, ["info", "lazy_broken"])  # no config class named: needs the model
    # A plugin that cannot be imported is a bug (of the plugin): exit code 70, one line.
    assert created.exit_code == 70 and "Traceback" not in created.output
    assert created.output.startswith("Error: Model 'lazy_broken' of plugin 'lazy-test-plugin'")


def test_plugins_command_finds_lazy_problems(lazy_plugin):
    runner = CliRunner()
    quick = runner.invoke(main, ["plugins", "--json"])
    assert quick.exit_code == 0, quick.output
    problems = {p["name"]: p["problems"] for p in json.loads(quick.output)}["lazy-test-plugin"]
    # Without --check the modules are only looked up: the missing one shows, nothing is imported.
    assert len(problems) == 1 and "nowhere" in problems[0]
    assert f"{lazy_plugin}.broken" not in sys.modules

    full = runner.invoke(main, ["plugins", "--check"])
    assert full.exit_code == 0, full.output
    block = full.output.split("lazy-test-plugin", 1)[1]
    assert "error" in block.splitlines()[0]
    assert "a_dependency_that_is_not_installed_xyz" in block and "nowhere" in block


def test_installed_lazy_plugin_with_a_broken_module(tmp_path):
    module = "cxrzoo_lazy_installed"
    fake_distribution(tmp_path, "cxrzoo-lazy-installed", module, LAZY_PLUGIN.format(module=module))
    for name, text in (("model", LAZY_MODEL), ("config", LAZY_CONFIG)):
        (tmp_path / module / f"{name}.py").write_text(text.format(module=module))
    (tmp_path / module / "broken.py").write_text("import a_dependency_that_is_not_installed_xyz\n")

    listed = run_cli("list", "--kind", "model", "--json", pythonpath=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert {"lazy_ok", "lazy_broken"} <= {m["name"] for m in json.loads(listed.stdout)} and not listed.stderr

    checked = run_cli("plugins", "--check", pythonpath=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "Model 'lazy_broken' of plugin 'cxrzoo-lazy-installed' cannot be loaded" in checked.stdout

    used = run_cli("info", "lazy_broken", pythonpath=tmp_path)
    assert used.returncode != 0 and "Traceback" not in used.stderr
    lines = used.stderr.strip().splitlines()
    assert len(lines) == 1 and f"importing {module}.broken failed" in lines[0], used.stderr


@pytest.mark.parametrize("name", sorted(FOUR))
def test_builtin_models_are_lazy_and_their_config_matches(name):
    entry = plugins.models.entry(name)
    assert entry.lazy and entry.description and entry.metadata["card"].endswith(":card.md")
    assert plugins.model_config_class(name) is plugins.models.get(name).config_class


def test_core_plugins_are_lazy_with_the_objects_descriptions():
    from cxrzoo.metrics.core import BUILTIN_METRICS

    for metric in BUILTIN_METRICS:
        entry = plugins.metrics.entry(metric.name)
        assert entry.lazy and entry.description == metric.description
        assert entry.obj is metric
    for entry in plugins.transforms.entries():
        assert entry.lazy
        doc = " ".join((entry.obj.__doc__ or "").split())
        assert doc.startswith(entry.description) or entry.name == "augment", entry.name


def test_registering_an_unusable_object_is_a_plugin_error():
    module = types.ModuleType("bad_paths")

    @hookimpl
    def register_models(register):
        register("bad_path", "not an import path")

    module.register_models = register_models
    info = plugins.register_plugin(module, "bad-paths")
    try:
        assert "register_models failed" in info.error and "not an import path" in info.error
        assert "bad_path" not in plugins.models
    finally:
        plugins.unregister_plugin("bad-paths")
