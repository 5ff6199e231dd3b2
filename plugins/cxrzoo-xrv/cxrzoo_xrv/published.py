"""The chest X-ray weights torchxrayvision publishes: where they are and what their outputs mean.

Facts read from torchxrayvision 1.5.7 (``torchxrayvision/models.py``): the release address of
each file, the 18 outputs in the order the network emits them (an empty name is an output the
weights were not trained for), the per-output operating thresholds it publishes (``None`` where
it publishes NaN) and the input size. No torchxrayvision code is used at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

LICENCE = (
    "Apache-2.0 (torchxrayvision code and released weights); the terms of each training data set "
    "still bind its users (MIMIC-CXR: PhysioNet credentialed access; CheXpert: Stanford research "
    "use agreement; PadChest and NIH: their own terms)"
)
CITATION = (
    "Cohen, J. P., Viviano, J. D., Bertin, P., Morrison, P., Torabian, P., Guarrera, M., Lungren, "
    "M. P., Chaudhari, A., Brooks, R., Hashir, M., Bertrand, H. TorchXRayVision: A library of chest "
    "X-ray datasets and models. Medical Imaging with Deep Learning (MIDL), 2022. "
    "https://github.com/mlmed/torchxrayvision"
)
CITATION_DENSENET = (
    "Cohen, J. P., Hashir, M., Brooks, R., Bertrand, H. On the limits of cross-domain "
    "generalization in automated X-ray prediction. MIDL 2020. https://arxiv.org/abs/2002.02497"
)
#: torchxrayvision's input: ``normalize(img, 255)`` maps 0..255 onto -1024..1024; one channel,
#: centre crop, then resize to the weights' input size.
PREPROCESSING = ("center_crop", "resize", "scale", "rescale(low=-1024.0, high=1024.0)")


#: torchxrayvision's 18 output positions, in its order; a weight trained on fewer findings leaves
#: the other positions unnamed ("") and cxrzoo drops them on import.
OUTPUTS: tuple[str, ...] = (
    "Atelectasis",
    "Consolidation",
    "Infiltration",
    "Pneumothorax",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Effusion",
    "Pneumonia",
    "Pleural_Thickening",
    "Cardiomegaly",
    "Nodule",
    "Mass",
    "Hernia",
    "Lung Lesion",
    "Fracture",
    "Lung Opacity",
    "Enlarged Cardiomediastinum",
)


def _only(*names: str) -> tuple[str, ...]:
    """The 18 positions with only ``names`` named."""
    unknown = set(names) - set(OUTPUTS)
    if unknown:
        raise ValueError(f"not torchxrayvision outputs: {sorted(unknown)}")
    return tuple(n if n in names else "" for n in OUTPUTS)


@dataclass(frozen=True)
class PublishedWeights:
    """One published weight file."""

    name: str
    architecture: str
    url: str
    outputs: tuple[str, ...]
    operating_thresholds: tuple[float | None, ...]
    input_size: int
    training_data: str
    alias: str | None = None

    @property
    def source(self) -> str:
        return f"xrv:{self.name}"

    @property
    def named(self) -> tuple[int, ...]:
        """Indices of the outputs that have a name (the others are dropped on import)."""
        return tuple(i for i, n in enumerate(self.outputs) if n)

    @property
    def citation(self) -> str:
        return CITATION if self.architecture == "xrv_resnet" else f"{CITATION_DENSENET}; {CITATION}"


WEIGHTS: tuple[PublishedWeights, ...] = (
    PublishedWeights(
        name="densenet121-res224-all",
        architecture="xrv_densenet",
        url="https://github.com/mlmed/torchxrayvision/releases/download/v1/nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
        outputs=OUTPUTS,
        operating_thresholds=(
            0.07422872,
            0.038290843,
            0.09814756,
            0.0098118475,
            0.023601074,
            0.0022490358,
            0.010060724,
            0.103246614,
            0.056810737,
            0.026791653,
            0.050318155,
            0.023985857,
            0.01939503,
            0.042889766,
            0.053369623,
            0.035975814,
            0.20204692,
            0.05015312,
        ),
        input_size=224,
        training_data="NIH ChestX-ray14, PadChest, CheXpert, MIMIC-CXR (CheXpert labels), Google's NIH relabelling, OpenI and the RSNA Pneumonia Challenge",
        alias="all",
    ),
    PublishedWeights(
        name="densenet121-res224-nih",
        architecture="xrv_densenet",
        url="https://github.com/mlmed/torchxrayvision/releases/download/v1/nih-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
        outputs=_only(
            "Atelectasis",
            "Consolidation",
            "Infiltration",
            "Pneumothorax",
            "Edema",
            "Emphysema",
            "Fibrosis",
            "Effusion",
            "Pneumonia",
            "Pleural_Thickening",
            "Cardiomegaly",
            "Nodule",
            "Mass",
            "Hernia",
        ),
        operating_thresholds=(
            0.039117552,
            0.0034529066,
            0.11396341,
            0.0057298196,
            0.00045666535,
            0.0018880932,
            0.012037827,
            0.038744126,
            0.0037213727,
            0.014730946,
            0.016149804,
            0.054241467,
            0.037198864,
            0.0004403434,
            None,
            None,
            None,
            None,
        ),
        input_size=224,
        training_data="NIH ChestX-ray14",
        alias="nih",
    ),
    PublishedWeights(
        name="densenet121-res224-pc",
        architecture="xrv_densenet",
        url="https://github.com/mlmed/torchxrayvision/releases/download/v1/pc-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
        outputs=_only(
            "Atelectasis",
            "Consolidation",
            "Infiltration",
            "Pneumothorax",
            "Edema",
            "Emphysema",
            "Fibrosis",
            "Effusion",
            "Pneumonia",
            "Pleural_Thickening",
            "Cardiomegaly",
            "Nodule",
            "Mass",
            "Hernia",
            "Fracture",
        ),
        operating_thresholds=(
            0.031012505,
            0.013347598,
            0.081435576,
            0.001262615,
            0.002587246,
            0.0035944257,
            0.0023071,
            0.055412333,
            0.044385884,
            0.042766232,
            0.043258056,
            0.037629247,
            0.005658899,
            0.0091741895,
            None,
            0.026507627,
            None,
            None,
        ),
        input_size=224,
        training_data="PadChest",
        alias="pc",
    ),
    PublishedWeights(
        name="densenet121-res224-chex",
        architecture="xrv_densenet",
        url="https://github.com/mlmed/torchxrayvision/releases/download/v1/chex-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
        outputs=_only(
            "Atelectasis",
            "Consolidation",
            "Pneumothorax",
            "Edema",
            "Effusion",
            "Pneumonia",
            "Cardiomegaly",
            "Lung Lesion",
            "Fracture",
            "Lung Opacity",
            "Enlarged Cardiomediastinum",
        ),
        operating_thresholds=(
            0.1988969,
            0.05710573,
            None,
            0.0531293,
            0.1435217,
            None,
            None,
            0.27212676,
            0.07749717,
            None,
            0.19712369,
            None,
            None,
            None,
            0.09932402,
            0.09273402,
            0.3270967,
            0.10888247,
        ),
        input_size=224,
        training_data="CheXpert",
        alias="chex",
    ),
    PublishedWeights(
        name="densenet121-res224-rsna",
        architecture="xrv_densenet",
        url="https://github.com/mlmed/torchxrayvision/releases/download/v1/kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
        outputs=_only("Pneumonia", "Lung Opacity"),
        operating_thresholds=(
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            0.13486601,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            0.13511065,
            None,
        ),
        input_size=224,
        training_data="RSNA Pneumonia Detection Challenge (Kaggle)",
        alias="rsna",
    ),
    PublishedWeights(
        name="densenet121-res224-mimic_nb",
        architecture="xrv_densenet",
        url="https://github.com/mlmed/torchxrayvision/releases/download/v1/mimic_nb-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
        outputs=_only(
            "Atelectasis",
            "Consolidation",
            "Pneumothorax",
            "Edema",
            "Effusion",
            "Pneumonia",
            "Cardiomegaly",
            "Lung Lesion",
            "Fracture",
            "Lung Opacity",
            "Enlarged Cardiomediastinum",
        ),
        operating_thresholds=(
            0.08558747,
            0.011884617,
            None,
            0.0040595434,
            0.010733786,
            None,
            None,
            0.118761964,
            0.022924708,
            None,
            0.06358637,
            None,
            None,
            None,
            0.022143636,
            0.017476924,
            0.1258702,
            0.014020768,
        ),
        input_size=224,
        training_data="MIMIC-CXR (NegBio labels)",
        alias="mimic_nb",
    ),
    PublishedWeights(
        name="densenet121-res224-mimic_ch",
        architecture="xrv_densenet",
        url="https://github.com/mlmed/torchxrayvision/releases/download/v1/mimic_ch-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
        outputs=_only(
            "Atelectasis",
            "Consolidation",
            "Pneumothorax",
            "Edema",
            "Effusion",
            "Pneumonia",
            "Cardiomegaly",
            "Lung Lesion",
            "Fracture",
            "Lung Opacity",
            "Enlarged Cardiomediastinum",
        ),
        operating_thresholds=(
            0.09121389,
            0.010573786,
            None,
            0.005023008,
            0.003698257,
            None,
            None,
            0.08001232,
            0.037242252,
            None,
            0.05006329,
            None,
            None,
            None,
            0.019866971,
            0.03823637,
            0.11303808,
            0.0069147074,
        ),
        input_size=224,
        training_data="MIMIC-CXR (CheXpert labels)",
        alias="mimic_ch",
    ),
    PublishedWeights(
        name="resnet50-res512-all",
        architecture="xrv_resnet",
        url="https://github.com/mlmed/torchxrayvision/releases/download/v1/pc-nih-rsna-siim-vin-resnet50-test512-e400-state.pt",
        outputs=OUTPUTS,
        operating_thresholds=(
            0.51570356,
            0.50444704,
            0.53787947,
            0.50723547,
            0.5025118,
            0.5035252,
            0.5038076,
            0.51862943,
            0.5078151,
            0.50724894,
            0.5056339,
            0.510706,
            0.5053923,
            0.5020846,
            None,
            0.5080557,
            0.5138526,
            None,
        ),
        input_size=512,
        training_data="PadChest, NIH ChestX-ray14, RSNA Pneumonia Challenge, SIIM-ACR Pneumothorax and VinDr-CXR",
        alias=None,
    ),
)

BY_NAME: dict[str, PublishedWeights] = {w.name: w for w in WEIGHTS}
BY_NAME.update({w.alias: w for w in WEIGHTS if w.alias})


def get(name: str) -> PublishedWeights:
    """The published weights ``name`` (torchxrayvision's full name or its short alias)."""
    if name in BY_NAME:
        return BY_NAME[name]
    import difflib

    from cxrzoo.weights import WeightSourceError

    close = difflib.get_close_matches(name, [w.name for w in WEIGHTS], n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise WeightSourceError(
        f"Unknown torchxrayvision weights {name!r}.{hint} Known: {', '.join(w.name for w in WEIGHTS)}"
    )
