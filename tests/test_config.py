import json

import pytest

import cxrzoo
from cxrzoo.config import ConfigError, ModelConfig, parse_value


def test_configs_are_frozen_and_round_trip_through_json():
    model = cxrzoo.create_model("rare_disease", backbone="test_resnet", image_size=48)
    cfg = model.config
    with pytest.raises(AttributeError):
        cfg.image_size = 64
    again = type(cfg).from_dict(json.loads(cfg.to_json()))
    assert again == cfg and isinstance(again.rare_labels, tuple)


def test_overrides_accept_command_line_strings():
    cfg = cxrzoo.create_model(
        "advanced_resnet",
        backbone="test_resnet",
        attention="false",
        fpn_channels="16",
        dropout="0.1",
        in_chans=1,
    ).config
    assert cfg.attention is False and cfg.fpn_channels == 16 and cfg.dropout == 0.1
    cfg = cfg.replace(preprocessing="resize,clahe,scale,normalize_grey")
    assert cfg.preprocessing == ("resize", "clahe", "scale", "normalize_grey")


def test_bad_values_and_keys_name_the_option():
    with pytest.raises(ConfigError, match="attention: expected true or false"):
        cxrzoo.create_model("advanced_resnet", attention="maybe")
    with pytest.raises(ConfigError, match=r"Unknown config option\(s\) \['atention'\]"):
        cxrzoo.create_model("advanced_resnet", atention=False)
    with pytest.raises(ConfigError, match="unknown key"):
        ModelConfig.from_dict({"labels": ["a"], "colour": 1})
    with pytest.raises(ConfigError, match="thresholds has 2 values for 14 labels"):
        ModelConfig(thresholds=(0.1, 0.2))


def test_parse_value():
    assert parse_value("false") is False
    assert parse_value("3") == 3
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("clahe") == "clahe"
    assert parse_value("a,b") == ["a", "b"]
