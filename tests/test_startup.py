"""Fast start: the describing commands import neither torch nor the models, and the card, Hub
and store modules import one way."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "sklearn", "huggingface_hub")


def run_in_fresh_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["list", "--kind", "model", "--json"],
        ["plugins"],
        ["plugins", "--json"],
        ["info", "rare_disease"],
        ["info", "ensemble", "--json"],
        ["info", "clahe"],
        ["info", "auroc"],
    ],
    ids=" ".join,
)
def test_describing_commands_leave_torch_out(args: list[str], tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from cxrzoo.cli import main\n"
        f"result = CliRunner().invoke(main, {args!r})\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps({'exit': result.exit_code, 'output': result.output, 'loaded': loaded}))\n"
    )
    done = run_in_fresh_python(code, {"CXRZOO_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["exit"] == 0, report["output"]
    assert report["loaded"] == [], f"cxrzoo {' '.join(args)} imported {report['loaded']}"
    assert report["output"].strip()


def test_info_shows_the_default_config_without_importing_the_model(tmp_path: Path) -> None:
    from cxrzoo_rare_disease.config import RareDiseaseConfig

    code = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from cxrzoo.cli import main\n"
        "out = CliRunner().invoke(main, ['info', 'rare_disease', '--json']).output\n"
        "print(json.dumps({'info': json.loads(out), 'model': 'cxrzoo_rare_disease.model' in sys.modules}))\n"
    )
    done = run_in_fresh_python(code, {"CXRZOO_HOME": str(tmp_path)})
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["info"]["config"] == RareDiseaseConfig().to_dict()
    assert report["info"]["trained"] is False and not report["model"]


def test_info_finds_trained_models_where_the_store_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxrzoo import store
    from cxrzoo.cli import _trained_folder

    monkeypatch.setenv("CXRZOO_HOME", str(tmp_path))
    assert _trained_folder("rare_disease") is None
    folder = store.model_path("rare_disease")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert _trained_folder("rare_disease") == folder
    for bad in ("", "../x", ".hidden", "a/b"):
        assert _trained_folder(bad) is None


# -- one-way imports between cards, hub and store --------------------------------------------
MODULES = ("cxrzoo.cards", "cxrzoo.hub", "cxrzoo.store")


def imports_of(module: str) -> set[str]:
    """cxrzoo modules that ``module`` imports anywhere in its source, functions included."""
    path = ROOT / (module.replace(".", "/") + ".py")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cxrzoo"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cxrzoo"))
    return {m for m in found if m in MODULES and m != module}


def test_cards_hub_and_store_have_no_import_cycle() -> None:
    graph = {m: imports_of(m) for m in MODULES}
    assert graph["cxrzoo.cards"] == set(), "cards must render without the store or the Hub"
    assert "cxrzoo.hub" not in graph["cxrzoo.store"]

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    assert not [m for m in MODULES if reaches(m, m)], graph


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module: str) -> None:
    done = run_in_fresh_python(f"import {module}; print('ok')")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_cards_render_without_the_hub_module() -> None:
    code = (
        "import sys\n"
        "from cxrzoo import cards\n"
        "text = cards.render_card(None, {'architecture': 'rare_disease', 'config': {}, 'weights': {}})\n"
        "assert text.startswith('---') and 'rare_disease' in text\n"
        "print(sorted(m for m in ('cxrzoo.hub', 'cxrzoo.store', 'torch', 'httpx2') if m in sys.modules))\n"
    )
    done = run_in_fresh_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_lazy_command_resolves_and_shows_in_help() -> None:
    import click
    from click.testing import CliRunner

    from cxrzoo.cli import LAZY_COMMANDS, main
    from cxrzoo.registry import import_object

    for name, path in LAZY_COMMANDS.items():
        command = import_object(path)
        assert isinstance(command, click.Command) and command.name == name
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()}
    assert set(LAZY_COMMANDS) | {"list", "info", "plugins"} <= listed
