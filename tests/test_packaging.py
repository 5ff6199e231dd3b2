"""What the distributions declare matches the code: dependencies, and package data that a
wheel install carries."""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def third_party_imports(package: Path) -> dict[str, str]:
    """Top-level modules imported anywhere in ``package`` (functions included) that are neither
    the standard library nor cxrzoo's own -> one file importing each."""
    found: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and not top.startswith("cxrzoo"):
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def declared(pyproject: Path) -> set[str]:
    """Normalised names of every distribution a pyproject requires, extras included."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {_normalise(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in requirements}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


PACKAGES = [(ROOT / "cxrzoo", ROOT / "pyproject.toml")] + [
    (p.parent, p.parent.parent / "pyproject.toml")
    for p in sorted(ROOT.glob("plugins/cxrzoo-*/cxrzoo_*/__init__.py"))
]


@pytest.mark.parametrize(("package", "pyproject"), PACKAGES, ids=[p.name for p, _ in PACKAGES])
def test_every_imported_distribution_is_declared(package: Path, pyproject: Path) -> None:
    distributions = md.packages_distributions()
    names = declared(pyproject)
    missing = {
        module: (distributions.get(module, ["?"]), where)
        for module, where in third_party_imports(package).items()
        if not {_normalise(d) for d in distributions.get(module, [module])} & names
    }
    assert not missing, f"imported but not declared in {pyproject.relative_to(ROOT)}: {missing}"


def test_test_helpers_imports_are_declared_in_the_test_extra() -> None:
    distributions = md.packages_distributions()
    names = declared(ROOT / "pyproject.toml")
    for module in third_party_imports(ROOT / "tests"):
        dists = distributions.get(module)
        if dists:  # sibling test modules (hub_server) are not distributions
            assert {_normalise(d) for d in dists} & names, module


def test_hub_requires_the_huggingface_hub_it_is_written_for() -> None:
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    hub = next(r for r in requirements if _normalise(r).startswith("huggingface-hub"))
    assert ">=2" in hub, "hub.py uses httpx2, which huggingface_hub 2.x brings"
    assert int(md.version("huggingface_hub").split(".")[0]) >= 2


def test_wheel_install_writes_the_plugins_own_card(tmp_path: Path, install_copy) -> None:
    """A non-editable install carries card.md as package data, and a saved model's README is
    rare_disease's own card, not the generic one."""
    site = install_copy(ROOT / "plugins" / "cxrzoo-rare-disease")
    assert (site / "cxrzoo_rare_disease" / "card.md").is_file()
    code = (
        "import cxrzoo, cxrzoo_rare_disease\n"
        "from cxrzoo import store\n"
        "from cxrzoo.plugins import models\n"
        "from cxrzoo.cards import card_source\n"
        "import importlib.resources\n"
        "print(importlib.resources.files('cxrzoo_rare_disease').joinpath('card.md'))\n"
        "assert 'rare-finding specialist' in card_source('rare_disease')\n"
        "model = cxrzoo.create_model('rare_disease', models.get('rare_disease').tiny_config())\n"
        "print(store.save(model, 'wheel-rare') / 'README.md')\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "CXRZOO_HOME": str(tmp_path / "home"),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    card_file, readme = done.stdout.strip().splitlines()[-2:]
    assert Path(card_file).is_relative_to(site), "the card is read from the wheel install, not the checkout"
    card = Path(readme).read_text()
    assert "rare-finding specialist for chest X-rays" in card
    assert "**Memory bank**" in card and "Rare findings of this model: Hernia" in card
    assert "A cxrzoo model of architecture" not in card  # the generic card's opening
