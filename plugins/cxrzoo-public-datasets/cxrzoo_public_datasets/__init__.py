"""Readers of the public chest X-ray data sets, each in the layout its publisher ships.

Installed, it registers these datasets with cxrzoo (entry point group ``cxrzoo``)::

    chexpert            CheXpert-v1.0 / CheXpert-v1.0-small (Stanford ML Group)
    mimic_cxr           MIMIC-CXR-JPG 2.x (PhysioNet)
    padchest            PadChest (BIMCV)
    rsna_pneumonia      RSNA Pneumonia Detection Challenge, stage 2 (Kaggle)
    siim_pneumothorax   SIIM-ACR Pneumothorax Segmentation (Kaggle)
    vindr_cxr           VinDr-CXR 1.0.0 (PhysioNet)
    covid19             covid-chestxray-dataset (ieee8023, GitHub)
    shenzhen, montgomery   the NLM tuberculosis sets
    object_cxr          object-CXR foreign objects (JF Healthcare, MIDL 2020)
    tbx11k              TBX11K tuberculosis boxes (COCO json)
    openi               OpenI / Indiana University reports (NLMCXR, MeSH terms)

Each reader declares its labels (cxrzoo vocabulary names, in the publisher's order), says
whether a folder is its own (``detect``), and reports problems by file name and line through
cxrzoo's shared catalog. ``cxrzoo data catalog DIR`` detects the layout;
``--dataset NAME --data DIR`` forces one.
"""

from __future__ import annotations

from cxrzoo import hookimpl

__version__ = "0.1.0"

#: Registered name -> (module, class, description).
READERS: dict[str, tuple[str, str, str]] = {
    "chexpert": ("chexpert", "CheXpert", "CheXpert-v1.0(-small): train.csv / valid.csv, -1 = uncertain"),
    "mimic_cxr": ("mimic_cxr", "MimicCxr", "MIMIC-CXR-JPG 2.x: CheXpert or NegBio labels per study"),
    "padchest": ("padchest", "PadChest", "PadChest: report-extracted findings, 16-bit PNGs"),
    "rsna_pneumonia": ("rsna_pneumonia", "RsnaPneumonia", "RSNA Pneumonia Detection Challenge (stage 2)"),
    "siim_pneumothorax": ("siim_pneumothorax", "SiimPneumothorax", "SIIM-ACR Pneumothorax (train-rle.csv)"),
    "vindr_cxr": ("vindr_cxr", "VinDrCxr", "VinDr-CXR: 3 readers per training image, consensus test"),
    "covid19": ("covid19", "Covid19", "ieee8023 covid-chestxray-dataset (X-rays)"),
    "shenzhen": ("shenzhen", "Shenzhen", "Shenzhen tuberculosis set (NLM)"),
    "montgomery": ("montgomery", "Montgomery", "Montgomery County tuberculosis set (NLM)"),
    "object_cxr": ("object_cxr", "ObjectCxr", "object-CXR: foreign objects (train.csv / dev.csv)"),
    "tbx11k": ("tbx11k", "Tbx11k", "TBX11K: tuberculosis areas, COCO json (train / val)"),
    "openi": ("openi", "OpenI", "OpenI (NLMCXR): MeSH terms of the Indiana University reports"),
}


@hookimpl
def register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    import importlib

    for name, (module, cls, description) in READERS.items():
        reader = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
        register(name, reader, description=description)


__all__ = ["READERS", "register_datasets"]
