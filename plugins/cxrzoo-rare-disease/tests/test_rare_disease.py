import pytest
import torch

from cxrzoo.config import ConfigError
from cxrzoo.labels import LABELS
from cxrzoo.testing import ModelConformance, tiny_model


class TestConformance(ModelConformance):
    model_name = "rare_disease"


def _targets(n, positives):
    t = torch.zeros(n, len(LABELS))
    for row, label in positives:
        t[row, LABELS.index(label)] = 1
    return t


def test_rare_labels_are_configurable_and_adapt_to_data():
    model = tiny_model("rare_disease", rare_labels=["Hernia", "Fibrosis"])
    assert model.config.rare_labels == ("Hernia", "Fibrosis")
    assert model.rare_head.classifier.out_features == 2
    assert model.common_head.classifier.out_features == 12
    prevalence = {label: 0.1 for label in LABELS} | {"Emphysema": 0.01}
    adapted = model.config.for_data(prevalence)
    # The configured rare labels stay; a finding rare in the data joins them.
    assert adapted.rare_labels == ("Emphysema", "Fibrosis", "Hernia")
    assert model.config.replace(adapt_rare=False).for_data(prevalence).rare_labels == ("Hernia", "Fibrosis")
    with pytest.raises(ConfigError, match="Hernai"):
        tiny_model("rare_disease", rare_labels=["Hernai"])


def test_outputs_are_in_label_order():
    # Each head's logits must land in the right label columns.
    model = tiny_model("rare_disease").eval()
    with torch.no_grad():
        model.rare_head.classifier.bias.fill_(5.0)
        model.rare_head.classifier.weight.zero_()
        model.common_head.classifier.bias.fill_(-5.0)
        model.common_head.classifier.weight.zero_()
        logits = model(torch.randn(2, 1, 32, 32))
    rare = {LABELS.index(r) for r in model.config.rare_labels}
    for i in range(len(LABELS)):
        expected = 5.0 if i in rare else -5.0
        assert torch.allclose(logits[:, i], torch.full((2,), expected)), LABELS[i]


def test_memory_bank_stores_rare_positives_and_replays_them():
    model = tiny_model("rare_disease").train()
    x = torch.randn(4, 1, 32, 32)
    none_rare = _targets(4, [(0, "Effusion")])
    model(x)
    assert model.auxiliary_loss(none_rare) is None  # empty bank, nothing rare to remember
    assert int(model.bank_count) == 0

    rare = _targets(4, [(1, "Hernia"), (3, "Edema"), (3, "Effusion")])
    model(x)
    assert model.auxiliary_loss(rare) is None  # bank was empty before this batch
    assert int(model.bank_count) == 2
    hernia = model.config.rare_labels.index("Hernia")
    assert model.bank_targets[:2, hernia].tolist() == [1.0, 0.0]

    model(x)
    loss = model.auxiliary_loss(rare)
    assert loss is not None and loss.requires_grad
    model.zero_grad()
    loss.backward()
    # Replay trains the rare head only: the encoder sees no gradient from stored features.
    assert model.rare_head.classifier.weight.grad is not None
    assert all(p.grad is None for p in model.backbone.parameters())


def test_memory_bank_is_a_ring_buffer_saved_with_the_weights(tmp_path):
    model = tiny_model("rare_disease", memory_size=4).train()
    rare = _targets(3, [(0, "Hernia"), (1, "Hernia"), (2, "Hernia")])
    for _ in range(3):
        model(torch.randn(3, 1, 32, 32))
        model.auxiliary_loss(rare)
    assert int(model.bank_count) == 4 and int(model.bank_next) == (9 % 4)
    model.save_pretrained(tmp_path / "m")
    from cxrzoo.store import load_folder

    loaded = load_folder(tmp_path / "m")
    assert torch.equal(loaded.bank_features, model.bank_features)
    assert int(loaded.bank_count) == 4
