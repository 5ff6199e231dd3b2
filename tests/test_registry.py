import pytest

from cxrzoo import plugins
from cxrzoo.registry import DuplicateNameError, Registry, UnknownNameError


def test_duplicate_names_are_an_error_naming_both_sources():
    reg = Registry("model")
    reg.add("net", object(), source="pkg-a")
    with pytest.raises(DuplicateNameError, match="'pkg-a'.*'pkg-b'"):
        reg.add("net", object(), source="pkg-b")


def test_unknown_name_suggests_close_matches_and_how_to_list():
    reg = Registry("model")
    reg.add("rare_disease", object(), source="x")
    reg.add("advanced_resnet", object(), source="x")
    with pytest.raises(UnknownNameError) as info:
        reg.get("rare_diseas")
    msg = str(info.value)
    assert "Did you mean 'rare_disease'?" in msg and "cxrzoo list --kind model" in msg
    with pytest.raises(UnknownNameError, match="^Unknown model 'zzz'. Run"):
        reg.get("zzz")


def test_names_take_glob_patterns():
    reg = Registry("model")
    for name in ("advanced_resnet", "chest_xray_attention", "rare_disease"):
        reg.add(name, object(), source="x")
    assert reg.names("*resnet*") == ["advanced_resnet"]
    assert reg.names("*a*e*") == ["advanced_resnet", "chest_xray_attention", "rare_disease"]
    assert reg.names() == sorted(reg.names())


def test_description_defaults_to_first_docstring_line():
    class Net:
        """A small net.

        More text."""

    reg = Registry("model")
    assert reg.add("net", Net, source="x").description == "A small net."


def test_the_four_models_come_from_their_own_distributions():
    sources = {e.name: e.source for e in plugins.models.entries()}
    assert sources["advanced_resnet"] == "cxrzoo-advanced-resnet"
    assert sources["chest_xray_attention"] == "cxrzoo-chest-attention"
    assert sources["rare_disease"] == "cxrzoo-rare-disease"
    assert sources["ensemble"] == "cxrzoo-ensemble"
    # Core built-ins arrive through the same hooks, from the core distribution.
    assert plugins.transforms.entry("clahe").source == "cxrzoo"
