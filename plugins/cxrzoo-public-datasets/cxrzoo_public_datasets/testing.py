"""Miniatures of each public data set in its official layout, for tests.

Each ``write_<dataset>(root)`` writes a handful of small images with the publisher's file
names, CSV headers and value codes (DICOM files are written with pydicom) and returns a
:class:`Miniature` saying what a reader must find: every usable image's labels (NaN where
unknown, uncertain labels under the default ``ignore``), list and patient, the uncertain
cells, and one example of each problem the layout can have (a missing image, an image without a
row, an unknown label value, a row with extra fields …).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cxrzoo.labels import CHEXPERT_LABELS

NAN = math.nan


@dataclass
class Miniature:
    """A written miniature and what reading it must give."""

    name: str
    root: Path
    labels: dict[str, dict[str, float]]  # image -> {source label: 1 / 0 / NaN}, usable images only
    lists: dict[str, str | None] = field(default_factory=dict)  # image -> list value
    patients: dict[str, str] = field(default_factory=dict)  # image -> patient
    uncertain: list[tuple[str, str]] = field(default_factory=list)  # (image, label) written -1
    problems: dict[str, list[Any]] = field(default_factory=dict)  # key -> images (or lines for bad_row)
    views: dict[str, str] = field(default_factory=dict)


def image_array(seed: int, size: int = 16, bits: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = (np.add.outer(np.arange(size), np.arange(size)) * 6 + rng.integers(0, 40, (size, size))).astype(
        np.uint8
    )
    return img.astype(np.uint16) * 257 if bits == 16 else img


def write_image(path: Path, seed: int, bits: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image_array(seed, bits=bits)):
        raise OSError(f"could not write {path}")


def write_dicom(path: Path, seed: int, **tags: str) -> None:
    """A small 12-bit MONOCHROME2 DICOM file with the given header tags (PatientID, ViewPosition …)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    pixels = (image_array(seed).astype(np.uint16) * 16).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    with warnings.catch_warnings():
        # Kaggle's DICOMs write ages as "51", not DICOM's "051Y"; the miniatures do the same.
        warnings.simplefilter("ignore", UserWarning)
        for key, value in tags.items():
            setattr(ds, key, value)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _value(code: str) -> float:
    return {"1.0": 1.0, "0.0": 0.0}.get(code, NAN)


# ---------------------------------------------------------------------------------------------
# CheXpert
# ---------------------------------------------------------------------------------------------

CHEXPERT_HEADER = [
    "Path",
    "Sex",
    "Age",
    "Frontal/Lateral",
    "AP/PA",
    *CHEXPERT_LABELS,
]
_CHEX_CANONICAL = {"Pleural Effusion": "Effusion"}


def write_chexpert(root: Path, *, release: str = "CheXpert-v1.0-small") -> Miniature:
    """CheXpert-v1.0-small: train.csv / valid.csv and train/patientN/studyK/viewM_frontal.jpg."""
    folder = root / release
    findings = CHEXPERT_HEADER[5:]
    mini = Miniature("chexpert", folder, labels={})

    def row(
        image: str, sex: str, age: str, fl: str, appa: str, codes: dict[str, str], listed: str
    ) -> list[Any]:
        cells = [codes.get(f, "") for f in findings]
        mini.labels[image] = {
            _CHEX_CANONICAL.get(f, f): _value(c) for f, c in zip(findings, cells, strict=True)
        }
        mini.uncertain += [(image, _CHEX_CANONICAL.get(f, f)) for f, c in codes.items() if c == "-1.0"]
        mini.lists[image] = listed
        mini.patients[image] = image.split("/")[1]
        mini.views[image] = appa or fl
        return [f"{release}/{image}", sex, age, fl, appa, *cells]

    train = [
        row("train/patient00001/study1/view1_frontal.jpg", "Male", "60", "Frontal", "PA",
            {"Cardiomegaly": "1.0", "Pleural Effusion": "-1.0", "Edema": "0.0"}, "train_val"),
        row("train/patient00001/study1/view2_lateral.jpg", "Male", "60", "Lateral", "",
            {"No Finding": "1.0"}, "train_val"),
        row("train/patient00001/study2/view1_frontal.jpg", "Male", "61", "Frontal", "AP",
            {"Atelectasis": "1.0", "Pneumonia": "-1.0", "Support Devices": "1.0"}, "train_val"),
        row("train/patient00002/study1/view1_frontal.jpg", "Female", "45", "Frontal", "AP",
            {"Pneumothorax": "1.0", "Lung Opacity": "0.0"}, "train_val"),
        row("train/patient00003/study1/view1_frontal.jpg", "Unknown", "33", "Frontal", "PA",
            {"No Finding": "1.0"}, "train_val"),
        row("train/patient00004/study1/view1_frontal.jpg", "Female", "50", "Frontal", "PA",
            {"Edema": "1.0", "Consolidation": "-1.0"}, "train_val"),
    ]  # fmt: skip
    unknown = row(
        "train/patient00005/study1/view1_frontal.jpg",
        "Male",
        "70",
        "Frontal",
        "PA",
        {"Fracture": "2.0"},
        "train_val",
    )
    missing = row(
        "train/patient00006/study1/view1_frontal.jpg",
        "Male",
        "70",
        "Frontal",
        "PA",
        {"Edema": "1.0"},
        "train_val",
    )
    shifted = row(
        "train/patient00007/study1/view1_frontal.jpg", "Male", "70", "Frontal", "PA", {}, "train_val"
    )
    valid = [
        row("valid/patient64541/study1/view1_frontal.jpg", "Male", "73", "Frontal", "AP",
            {f: "0.0" for f in findings} | {"Cardiomegaly": "1.0", "No Finding": "0.0"}, "val"),
        row("valid/patient64542/study1/view1_frontal.jpg", "Female", "70", "Frontal", "PA",
            {f: "0.0" for f in findings} | {"No Finding": "1.0"}, "val"),
    ]  # fmt: skip
    for image in (unknown[0], missing[0], shifted[0]):
        key = image.split("/", 1)[1]
        for d in (mini.labels, mini.lists, mini.patients, mini.views):
            d.pop(key, None)
    mini.uncertain = [u for u in mini.uncertain if u[0] in mini.labels]
    folder.mkdir(parents=True, exist_ok=True)
    text = _csv_text(CHEXPERT_HEADER, [*train, unknown, missing])
    text += ",".join(map(str, shifted)) + ",1.0\n"  # one field too many: its columns would shift
    (folder / "train.csv").write_text(text)
    (folder / "valid.csv").write_text(_csv_text(CHEXPERT_HEADER, valid))
    for seed, image in enumerate(
        [*mini.labels, unknown[0].split("/", 1)[1], "train/patient00009/study1/view1_frontal.jpg"]
    ):
        write_image(folder / image, seed)
    mini.problems = {
        "missing": [missing[0].split("/", 1)[1]],
        "no_row": ["train/patient00009/study1/view1_frontal.jpg"],
        "unknown_label": [unknown[0].split("/", 1)[1]],
        "bad_row": [len(train) + 4],  # header, 6 rows, unknown, missing -> line 10
    }
    return mini


# ---------------------------------------------------------------------------------------------
# MIMIC-CXR-JPG
# ---------------------------------------------------------------------------------------------

MIMIC_LABELS = [
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
    "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
    "Pneumothorax", "Support Devices",
]  # fmt: skip
MIMIC_METADATA = [
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
    "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]  # fmt: skip


def _gz(path: Path, text: str) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(text)


def write_mimic_cxr(root: Path) -> Miniature:
    """MIMIC-CXR-JPG 2.0.0: the four csv.gz files and files/pXX/p<subject>/s<study>/<dicom_id>.jpg."""
    root.mkdir(parents=True, exist_ok=True)
    dicoms = [  # dicom_id, subject, study, view, split
        ("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "10000032", "50414267", "PA", "train"),
        ("174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "10000032", "50414267", "LATERAL", "train"),
        ("2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "10000032", "53189527", "AP", "train"),
        ("68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714", "10000764", "57375967", "AP", "train"),
        ("096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4", "10000898", "50771383", "PA", "validate"),
        ("8959e402-2175d68d-edba5a6c-520e71ec-5ae5ecd7", "10001176", "53186264", "PA", "test"),
        ("fffabebf-74fd3a1f-673b6b41-96ec0ac9-2ab69818", "10001401", "58747570", "AP", "train"),  # no label row
        ("ab1c2d3e-4f5a6b7c-8d9e0f1a-2b3c4d5e-6f7a8b9c", "10002013", "59000001", "PA", "train"),  # missing file
    ]  # fmt: skip
    studies = {  # (subject, study) -> chexpert codes, negbio codes
        ("10000032", "50414267"): ({"No Finding": "1.0"}, {"No Finding": "1.0"}),
        ("10000032", "53189527"): ({"Edema": "-1.0", "Pleural Effusion": "1.0"}, {"Edema": "1.0", "Pleural Effusion": "1.0"}),
        ("10000764", "57375967"): ({"Pneumonia": "-1.0", "Consolidation": "0.0"}, {"Pneumonia": "0.0"}),
        ("10000898", "50771383"): ({"Cardiomegaly": "1.0", "Lung Opacity": "1.0"}, {"Cardiomegaly": "1.0"}),
        ("10001176", "53186264"): ({"Pneumothorax": "1.0", "Support Devices": "1.0"}, {"Pneumothorax": "1.0"}),
        ("10002013", "59000001"): ({"Fracture": "1.0"}, {"Fracture": "1.0"}),
    }  # fmt: skip
    meta = [[d, s, st, "CHEST (PA AND LAT)", v, 3056, 2544, 21800506, 213014.531, "CHEST (PA AND LAT)",
             "postero-anterior", "Erect"] for d, s, st, v, _ in dicoms]  # fmt: skip
    _gz(root / "mimic-cxr-2.0.0-metadata.csv.gz", _csv_text(MIMIC_METADATA, meta))
    _gz(root / "mimic-cxr-2.0.0-split.csv.gz",
        _csv_text(["dicom_id", "study_id", "subject_id", "split"], [[d, st, s, sp] for d, s, st, _, sp in dicoms]))  # fmt: skip
    for k, name in enumerate(("chexpert", "negbio")):
        rows = [[s, st, *(codes[k].get(f, "") for f in MIMIC_LABELS)] for (s, st), codes in studies.items()]
        _gz(
            root / f"mimic-cxr-2.0.0-{name}.csv.gz",
            _csv_text(["subject_id", "study_id", *MIMIC_LABELS], rows),
        )
    mini = Miniature("mimic_cxr", root, labels={})
    lists = {"train": "train_val", "validate": "val", "test": "test"}
    canonical = {"Pleural Effusion": "Effusion"}
    for seed, (d, s, st, view, sp) in enumerate(dicoms):
        image = root / "files" / f"p{s[:2]}" / f"p{s}" / f"s{st}" / f"{d}.jpg"
        if st == "59000001":
            continue
        write_image(image, seed)
        codes = studies.get((s, st), ({}, {}))[0]
        mini.labels[d] = {
            canonical.get(f, f): (_value(codes[f]) if f in codes else NAN) for f in MIMIC_LABELS
        }
        mini.uncertain += [(d, canonical.get(f, f)) for f, c in codes.items() if c == "-1.0"]
        mini.lists[d], mini.patients[d], mini.views[d] = lists[sp], s, view
    write_image(
        root
        / "files"
        / "p10"
        / "p10009999"
        / "s59999999"
        / "0badcafe-00000000-00000000-00000000-00000000.jpg",
        99,
    )
    mini.problems = {"missing": [dicoms[-1][0]], "no_row": ["0badcafe-00000000-00000000-00000000-00000000"]}
    return mini


# ---------------------------------------------------------------------------------------------
# PadChest
# ---------------------------------------------------------------------------------------------

PADCHEST_HEADER = [
    "ImageID", "ImageDir", "StudyDate_DICOM", "StudyID", "PatientID", "PatientBirth", "PatientSex_DICOM",
    "ViewPosition_DICOM", "Projection", "MethodProjection", "Pediatric", "Modality_DICOM", "Manufacturer_DICOM",
    "PhotometricInterpretation_DICOM", "PixelRepresentation_DICOM", "PixelAspectRatio_DICOM",
    "SpatialResolution_DICOM", "BitsStored_DICOM", "WindowCenter_DICOM", "WindowWidth_DICOM", "Rows_DICOM",
    "Columns_DICOM", "XRayTubeCurrent_DICOM", "Exposure_DICOM", "ExposureInuAs_DICOM", "ExposureTime",
    "RelativeXRayExposure_DICOM", "ReportID", "Report", "MethodLabel", "Labels", "Localizations",
    "LabelsLocalizationsBySentence", "labelCUIS", "LocalizationsCUIS",
]  # fmt: skip
PADCHEST_CSV = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"


def write_padchest(root: Path) -> Miniature:
    """PadChest: the labels CSV (Labels as a Python-list text) and 16-bit PNGs in 0/, 1/ …"""
    root.mkdir(parents=True, exist_ok=True)
    entries = [  # image, dir, patient, birth, sex, projection, Labels
        ("216840111366964012339356563862009072111404053_00-174-076.png", 0, "patA", "1950", "M", "PA", "['normal']"),
        ("216840111366964012339356563862009072111404053_00-174-077.png", 0, "patA", "1950", "M", "L", "['normal']"),
        ("216840111366964012373310883942009117084022290_00-064-025.png", 1, "patB", "1935", "F", "PA",
         "['pleural effusion', 'cardiomegaly']"),
        ("216840111366964012373310883942009117084022290_00-064-026.png", 1, "patC", "1960", "F", "AP_horizontal",
         "[' nodule', 'aortic atheromatosis', 'suboptimal study']"),
        ("216840111366964013076187734852011291090445391_00-196-188.png", 1, "patD", "1941", "M", "PA",
         "['exclude']"),
        ("216840111366964013076187734852011291090445391_00-196-189.png", 1, "patE", "1970", "M", "PA",
         "['pneumonia'"),
        ("216840111366964013076187734852011291090445391_00-196-190.png", 1, "patF", "1980", "F", "PA",
         "['alveolar pattern', 'laminar atelectasis', 'pacemaker']"),
    ]  # fmt: skip
    rows = []
    for image, folder, patient, birth, sex, projection, labels in entries:
        row = dict.fromkeys(PADCHEST_HEADER, "")
        row.update(ImageID=image, ImageDir=folder, StudyDate_DICOM="20150317", StudyID=f"st{patient}", PatientID=patient,
                   PatientBirth=birth, PatientSex_DICOM=sex, Projection=projection, Labels=labels, Modality_DICOM="CR",
                   MethodLabel="Physician", Report="informe")  # fmt: skip
        rows.append([row[h] for h in PADCHEST_HEADER])
    (root / PADCHEST_CSV).write_text(_csv_text(PADCHEST_HEADER, rows))
    from cxrzoo_public_datasets.padchest import PUBLISHED_ORDER

    positives = {0: ["No Finding"], 1: ["No Finding"], 2: ["Effusion", "Cardiomegaly"], 3: ["Nodule"],
                 6: ["Consolidation", "Atelectasis", "Support Devices"]}  # fmt: skip
    mini = Miniature("padchest", root, labels={})
    for seed, (image, folder, patient, _, _, projection, _) in enumerate(entries):
        write_image(root / str(folder) / image, seed, bits=16)
        if seed in positives:
            mini.labels[image] = {name: float(name in positives[seed]) for name in PUBLISHED_ORDER}
            mini.patients[image], mini.lists[image], mini.views[image] = patient, None, projection
    write_image(root / "2" / "216840111366964099999999999999999999999999999_00-000-000.png", 99, bits=16)
    mini.problems = {
        "unknown_label": [entries[5][0]],
        "skipped_row": [entries[4][0]],
        "no_row": ["216840111366964099999999999999999999999999999_00-000-000.png"],
        "unmapped_label": ["aortic atheromatosis"],
    }
    return mini


# ---------------------------------------------------------------------------------------------
# RSNA Pneumonia
# ---------------------------------------------------------------------------------------------


def write_rsna_pneumonia(root: Path) -> Miniature:
    """RSNA Pneumonia stage 2: the two CSVs (one row per box) and stage_2_train_images/<id>.dcm."""
    root.mkdir(parents=True, exist_ok=True)
    ids = ["0004cfab-14fd-4e49-80ba-63a80b6bddd6", "00313ee0-9eaa-42f4-b0ab-c148ed3241cd",
           "00322d4d-1c29-4943-afc9-b6754be640eb", "003d8fa0-6bf1-40ed-b54c-ac657f8495c5",
           "00436515-870c-4b36-a041-de91049b9ab4", "00569f44-917d-4c86-a842-81832af98c30",
           "006cec2e-6ce2-4549-bffa-eadfcd1e9970"]  # fmt: skip
    boxes = [
        [ids[0], "", "", "", "", 0], [ids[1], "", "", "", "", 0], [ids[2], "", "", "", "", 0],
        [ids[3], 264.0, 152.0, 213.0, 379.0, 1], [ids[3], 562.0, 152.0, 256.0, 453.0, 1],
        [ids[4], 562.0, 152.0, 256.0, 453.0, 1], [ids[5], "", "", "", "", 0], [ids[6], "", "", "", "", 1],
    ]  # fmt: skip
    classes = [[ids[0], "No Lung Opacity / Not Normal"], [ids[1], "Normal"], [ids[2], "No Lung Opacity / Not Normal"],
               [ids[3], "Lung Opacity"], [ids[3], "Lung Opacity"], [ids[4], "Lung Opacity"], [ids[5], "Normal"],
               [ids[6], "Normal"]]  # fmt: skip
    (root / "stage_2_train_labels.csv").write_text(
        _csv_text(["patientId", "x", "y", "width", "height", "Target"], boxes)
    )
    (root / "stage_2_detailed_class_info.csv").write_text(_csv_text(["patientId", "class"], classes))
    views = ["PA", "AP", "PA", "AP", "AP", "PA", "PA"]
    for seed, (image, view) in enumerate(zip(ids, views, strict=True)):
        if seed == 5:
            continue  # its image is missing
        write_dicom(root / "stage_2_train_images" / f"{image}.dcm", seed, PatientID=image, PatientAge=str(30 + seed),
                    PatientSex="MF"[seed % 2], ViewPosition=view)  # fmt: skip
    write_dicom(root / "stage_2_train_images" / "ffffffff-0000-0000-0000-000000000000.dcm", 9, PatientID="x")
    mini = Miniature("rsna_pneumonia", root, labels={})
    for k, (pneumonia, normal) in enumerate([(0, 0), (0, 1), (0, 0), (1, 0), (1, 0)]):
        mini.labels[ids[k]] = {"Pneumonia": float(pneumonia), "Lung Opacity": 1.0 if pneumonia else NAN,
                               "No Finding": float(normal)}  # fmt: skip
        mini.patients[ids[k]], mini.lists[ids[k]], mini.views[ids[k]] = ids[k], None, views[k]
    mini.problems = {
        "missing": [ids[5]],
        "unknown_label": [ids[6]],
        "no_row": ["ffffffff-0000-0000-0000-000000000000"],
    }
    return mini


# ---------------------------------------------------------------------------------------------
# SIIM-ACR Pneumothorax
# ---------------------------------------------------------------------------------------------


def write_siim_pneumothorax(root: Path) -> Miniature:
    """SIIM-ACR: train-rle.csv ("ImageId, EncodedPixels", -1 = none) and the DICOM tree."""
    root.mkdir(parents=True, exist_ok=True)
    uid = "1.2.276.0.7230010.3.1.4.8323329.{}.1517875{}.{}"
    images = [uid.format(5597 + k, 190 + k, 100 + k) for k in range(6)]
    patients = ["17d405a3-a0d2-4901-b33a-63906aa48d9f", "8ab1ffda-8b65-4914-95d6-2e549e328666",
                "8ab1ffda-8b65-4914-95d6-2e549e328666", "bfef51d3-6541-4792-bac1-d21d41ee60fd",
                "d19d956f-4ddd-4688-81ff-909c85e0e2d9", "cf71a760-f693-4ccf-acd4-a41ff4845a5f"]  # fmt: skip
    lines = ["ImageId, EncodedPixels", f"{images[0]}, -1", f"{images[1]}, 387620 23 996 33 986 43",
             f"{images[1]}, 175349 7 1013 12 1009 17", f"{images[2]}, -1", f"{images[3]}, 407576 2 1021 7 1015 10",
             f"{images[4]}, ", f"{images[5]}, -1"]  # fmt: skip
    (root / "train-rle.csv").write_text("\n".join(lines) + "\n")
    views = ["PA", "AP", "PA", "AP", "PA", "PA"]
    for k, image in enumerate(images[:5]):
        study, series = (
            f"1.2.276.0.7230010.3.1.2.8323329.{5597 + k}",
            f"1.2.276.0.7230010.3.1.3.8323329.{5597 + k}",
        )
        write_dicom(root / "dicom-images-train" / study / series / f"{image}.dcm", k, PatientID=patients[k],
                    PatientAge=str(40 + k), PatientSex="MF"[k % 2], ViewPosition=views[k])  # fmt: skip
    extra = uid.format(9999, 999, 999)
    write_dicom(root / "dicom-images-train" / "s" / "t" / f"{extra}.dcm", 9, PatientID="z")
    mini = Miniature("siim_pneumothorax", root, labels={})
    for k, value in enumerate([0.0, 1.0, 0.0, 1.0]):
        mini.labels[images[k]] = {"Pneumothorax": value}
        mini.patients[images[k]], mini.lists[images[k]], mini.views[images[k]] = patients[k], None, views[k]
    mini.problems = {"unknown_label": [images[4]], "missing": [images[5]], "no_row": [extra]}
    return mini


# ---------------------------------------------------------------------------------------------
# VinDr-CXR
# ---------------------------------------------------------------------------------------------


def write_vindr_cxr(root: Path) -> Miniature:
    """VinDr-CXR 1.0.0: annotations/image_labels_{train,test}.csv and train/, test/ *.dicom."""
    from cxrzoo.labels import canonical
    from cxrzoo_public_datasets.vindr_cxr import PUBLISHED_LABELS

    (root / "annotations").mkdir(parents=True, exist_ok=True)
    train_ids = ["000434271f63a053c4128a0ba6352c7f", "00053190460d56c53cc3e57321387478",
                 "0005e8e3701dfb1dd93d53e2ff537b6e", "0006e0a85696f6bb578e84fafa9a5607"]  # fmt: skip
    test_ids = ["002a34c58c5b758217ed1f584ccbcfe9", "004f33259ee4aef671c2b95d54e4be68"]
    votes = {  # image -> per reader, the findings marked
        train_ids[0]: [["Cardiomegaly"], ["Cardiomegaly", "Pleural effusion"], ["Cardiomegaly"]],
        train_ids[1]: [["No finding"], ["No finding"], ["No finding"]],
        train_ids[2]: [["Nodule/Mass"], [], ["Nodule/Mass", "Pneumothorax"]],
        train_ids[3]: [["Aortic enlargement"], ["No finding"]],  # two readers split: a tie
    }
    rows = []
    for image, readers in votes.items():
        for r, marked in enumerate(readers):
            rows.append([image, f"R{r + 8}", *(int(f in marked) for f in PUBLISHED_LABELS)])
    bad = [train_ids[3], "R9", *(2 if f == "Lung Opacity" else 0 for f in PUBLISHED_LABELS)]
    (root / "annotations" / "image_labels_train.csv").write_text(
        _csv_text(["image_id", "rad_id", *PUBLISHED_LABELS], [*rows, bad])
    )
    test_marked = {test_ids[0]: ["Tuberculosis", "Lung Opacity"], test_ids[1]: ["No finding"]}
    (root / "annotations" / "image_labels_test.csv").write_text(
        _csv_text(
            ["image_id", *PUBLISHED_LABELS],
            [[i, *(int(f in m) for f in PUBLISHED_LABELS)] for i, m in test_marked.items()],
        )
    )
    for k, image in enumerate(train_ids):
        write_dicom(root / "train" / f"{image}.dicom", k, PatientAge=f"0{40 + k}Y", PatientSex="MF"[k % 2])
    for k, image in enumerate(test_ids):
        write_dicom(root / "test" / f"{image}.dicom", 10 + k, PatientAge="", PatientSex="O")
    write_dicom(root / "train" / "ffffffffffffffffffffffffffffffff.dicom", 20)
    mini = Miniature("vindr_cxr", root, labels={})
    for image in train_ids[:3]:
        readers = votes[image]
        mini.labels[image] = {}
        for f in PUBLISHED_LABELS:
            count = sum(f in m for m in readers)
            share = count / len(readers)
            mini.labels[image][canonical(f) or f] = 1.0 if share > 0.5 else (0.0 if share < 0.5 else NAN)
        mini.lists[image], mini.patients[image] = "train_val", image
    for image, marked in test_marked.items():
        mini.labels[image] = {canonical(f) or f: float(f in marked) for f in PUBLISHED_LABELS}
        mini.lists[image], mini.patients[image] = "test", image
    mini.problems = {"unknown_label": [train_ids[3]], "no_row": ["ffffffffffffffffffffffffffffffff"]}
    mini.uncertain = [(train_ids[2], "Mass")]  # for vote=any: 2 of 3 readers -> positive either way
    return mini


# ---------------------------------------------------------------------------------------------
# COVID-19 image data collection
# ---------------------------------------------------------------------------------------------

COVID_HEADER = [
    "patientid", "offset", "sex", "age", "finding", "RT_PCR_positive", "survival", "intubated",
    "intubation_present", "went_icu", "in_icu", "needed_supplemental_O2", "extubated", "temperature",
    "pO2_saturation", "leukocyte_count", "neutrophil_count", "lymphocyte_count", "view", "modality", "date",
    "location", "folder", "filename", "doi", "url", "license", "clinical_notes", "other_notes", "",
]  # fmt: skip


def write_covid19(root: Path) -> Miniature:
    """ieee8023/covid-chestxray-dataset: metadata.csv and images/."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries = [  # patientid, sex, age, finding, view, modality, filename
        ("2", "M", "65", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "auntminnie-a-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg"),
        ("2", "M", "65", "Pneumonia/Viral/COVID-19", "L", "X-ray", "auntminnie-b-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg"),
        ("5", "F", "52", "Pneumonia/Bacterial/Streptococcus", "AP Supine", "X-ray", "streptococcus-pneumoniae-pneumonia-1.jpg"),
        ("7", "", "", "Pneumonia", "PA", "X-ray", "pneumonia-7.png"),
        ("8", "F", "35", "No Finding", "PA", "X-ray", "normal-8.png"),
        ("9", "M", "41", "Tuberculosis", "PA", "X-ray", "tb-9.png"),
        ("10", "M", "50", "Pneumonia/Viral/COVID-19", "Axial", "CT", "ct-10.jpg"),
        ("11", "M", "-5", "todo", "PA", "X-ray", "todo-11.png"),
    ]  # fmt: skip
    rows = []
    for patient, sex, age, finding, view, modality, name in entries:
        row = dict.fromkeys(COVID_HEADER, "")
        row.update(patientid=patient, sex=sex, age=age, finding=finding, view=view, modality=modality, folder="images",
                   filename=name, license="CC BY-NC-SA")  # fmt: skip
        rows.append([row[h] for h in COVID_HEADER])
    (root / "metadata.csv").write_text(_csv_text(COVID_HEADER, rows))
    for seed, entry in enumerate(entries):
        write_image(root / "images" / entry[6], seed)
    mini = Miniature("covid19", root, labels={})
    names = [
        "Pneumonia",
        "Viral Pneumonia",
        "Bacterial Pneumonia",
        "Fungal Pneumonia",
        "COVID-19",
        "Tuberculosis",
        "No Finding",
    ]
    expected = [
        [1, 1, 0, 0, 1, 0, 0], [1, 1, 0, 0, 1, 0, 0], [1, 0, 1, 0, 0, 0, 0], [1, NAN, NAN, NAN, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1, 0],
    ]  # fmt: skip
    for k, values in enumerate(expected):
        image = entries[k][6]
        mini.labels[image] = {n: float(v) for n, v in zip(names, values, strict=True)}
        mini.patients[image], mini.lists[image], mini.views[image] = entries[k][0], None, entries[k][4]
    mini.problems = {
        "skipped_row": [entries[6][6]],
        "unknown_label": [entries[7][6]],
        "bad_value": [entries[7][6]],
    }
    return mini


# ---------------------------------------------------------------------------------------------
# Shenzhen and Montgomery
# ---------------------------------------------------------------------------------------------


def _write_tb(root: Path, name: str, prefix: str, readings: dict[str, str]) -> Miniature:
    (root / "CXR_png").mkdir(parents=True, exist_ok=True)
    (root / "ClinicalReadings").mkdir(parents=True, exist_ok=True)
    mini = Miniature(name, root, labels={})
    missing = f"{prefix}_0006_1"  # a reading whose image is not there
    for seed, (stem, text) in enumerate(readings.items()):
        if stem.endswith("_missing"):
            stem = missing
        else:
            write_image(root / "CXR_png" / f"{stem}.png", seed)
        (root / "ClinicalReadings" / f"{stem}.txt").write_text(text)
    stems = [s for s in readings if not s.endswith(("_missing", "_x"))]
    for stem in stems:
        tb = float(stem.endswith("_1"))
        mini.labels[stem] = {"Tuberculosis": tb, "No Finding": 1.0 - tb}
        mini.patients[stem], mini.lists[stem], mini.views[stem] = stem.rsplit("_", 1)[0], None, "PA"
    write_image(root / "CXR_png" / f"{prefix}_0099_0.png", 99)
    mini.labels[f"{prefix}_0099_0"] = {"Tuberculosis": 0.0, "No Finding": 1.0}
    mini.patients[f"{prefix}_0099_0"], mini.lists[f"{prefix}_0099_0"] = f"{prefix}_0099", None
    mini.problems = {"unknown_label": [f"{prefix}_0005_x"], "missing": [missing]}
    return mini


def write_shenzhen(root: Path) -> Miniature:
    """ChinaSet_AllFiles: CXR_png/CHNCXR_NNNN_L.png (L = 0 normal, 1 tuberculosis), ClinicalReadings/."""
    return _write_tb(root / "ChinaSet_AllFiles", "shenzhen", "CHNCXR", {
        "CHNCXR_0001_0": "male 45yrs\nnormal\n", "CHNCXR_0002_0": "Female 24yrs\n\nnormal\n",
        "CHNCXR_0327_1": "male 48yrs\nbilateral PTB, right upper atelectasis\n",
        "CHNCXR_0328_1": "female 35yrs\nleft secondary PTB\n", "CHNCXR_0005_x": "male 30yrs\n",
        "CHNCXR_0006_missing": "male 30yrs\nnormal\n",
    })  # fmt: skip


def write_montgomery(root: Path) -> Miniature:
    """MontgomerySet: CXR_png/MCUCXR_NNNN_L.png and ClinicalReadings/ with "Patient's Sex: M" lines."""
    return _write_tb(root / "MontgomerySet", "montgomery", "MCUCXR", {
        "MCUCXR_0001_0": "Patient's Sex: F\nPatient's Age: 040Y\nnormal\n",
        "MCUCXR_0002_0": "Patient's Sex: M\nPatient's Age: 052Y\nnormal\n",
        "MCUCXR_0104_1": "Patient's Sex: M\nPatient's Age: 047Y\nright upper lobe cavitary TB\n",
        "MCUCXR_0108_1": "Patient's Sex: F\nPatient's Age: 030Y\nbilateral TB\n",
        "MCUCXR_0005_x": "Patient's Sex: F\nPatient's Age: 030Y\n", "MCUCXR_0006_missing": "",
    })  # fmt: skip


#: Every miniature writer by dataset name.
def write_object_cxr(root: Path) -> Miniature:
    """object-CXR: train.csv / dev.csv (image_name, annotation) and train/, dev/ JPEGs."""
    train = [("00001.jpg", "0 1134 1424 1292 1634;1 502 1320 549 1373"), ("00002.jpg", ""),
             ("00004.jpg", "1 90 80 120 130"), ("00005.jpg", ""), ("00006.jpg", "0 10 10 40 40"),
             ("00007.jpg", ""), ("00003.jpg", "2 700 800 710 820 690 830")]  # fmt: skip
    dev = [("08001.jpg", ""), ("08002.jpg", "1 100 100 140 150")]
    for folder, name, entries in (("train", "train.csv", train), ("dev", "dev.csv", dev)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / name).write_text(_csv_text(["image_name", "annotation"], [list(e) for e in entries]))
    for seed, (image, _) in enumerate(train[:-1] + dev):
        write_image(root / ("train" if image < "08000" else "dev") / image, seed)
    mini = Miniature("object_cxr", root, labels={})
    for image, annotation in train[:-1] + dev:
        mini.labels[image] = {"Foreign Object": float(bool(annotation))}
        mini.lists[image] = "train_val" if image < "08000" else "val"
        mini.patients[image] = image
    mini.problems = {"missing": [train[-1][0]]}
    return mini


def write_tbx11k(root: Path) -> Miniature:
    """TBX11K: imgs/{health,sick,tb}/*.png and annotations/json/TBX11K_{train,val}.json (COCO)."""
    import json

    categories = [{"id": 1, "name": "ActiveTuberculosis", "supercategory": "Tuberculosis"},
                  {"id": 2, "name": "ObsoletePulmonaryTuberculosis", "supercategory": "Tuberculosis"},
                  {"id": 3, "name": "PulmonaryTuberculosis", "supercategory": "Tuberculosis"}]  # fmt: skip
    sets = {  # file name -> categories of its boxes
        "TBX11K_train.json": {"health/h0001.png": [], "sick/s0001.png": [], "tb/tb0003.png": [1, 1],
                              "tb/tb0004.png": [2], "health/h0002.png": [], "tb/tb0009.png": [1]},
        "TBX11K_val.json": {"health/h0100.png": [], "tb/tb0100.png": [1, 2]},
    }  # fmt: skip
    (root / "annotations" / "json").mkdir(parents=True, exist_ok=True)
    mini = Miniature("tbx11k", root, labels={})
    seed = 0
    for name, images in sets.items():
        doc: dict[str, Any] = {"images": [], "annotations": [], "categories": categories}
        for k, (image, boxes) in enumerate(images.items()):
            doc["images"].append({"id": k, "file_name": image, "height": 16, "width": 16})
            doc["annotations"] += [{"id": len(doc["annotations"]), "image_id": k, "category_id": c,
                                    "bbox": [1, 1, 4, 4]} for c in boxes]  # fmt: skip
            if image == "tb/tb0009.png":
                continue  # its file is missing
            write_image(root / "imgs" / image, seed)
            seed += 1
            listed = "train_val" if name == "TBX11K_train.json" else "val"
            mini.labels[image] = {"Tuberculosis": float(bool(boxes)), "Active Tuberculosis": float(1 in boxes),
                                  "Obsolete Pulmonary Tuberculosis": float(2 in boxes),
                                  "No Finding": float(image.startswith("health/"))}  # fmt: skip
            mini.lists[image], mini.patients[image] = listed, image
        (root / "annotations" / "json" / name).write_text(json.dumps(doc))
    write_image(root / "imgs" / "test" / "t0001.png", 99)  # no labels published
    mini.problems = {"missing": ["tb/tb0009.png"], "no_row": ["test/t0001.png"]}
    return mini


WRITERS: dict[str, Callable[[Path], Miniature]] = {
    "chexpert": write_chexpert,
    "mimic_cxr": write_mimic_cxr,
    "padchest": write_padchest,
    "rsna_pneumonia": write_rsna_pneumonia,
    "siim_pneumothorax": write_siim_pneumothorax,
    "vindr_cxr": write_vindr_cxr,
    "covid19": write_covid19,
    "shenzhen": write_shenzhen,
    "montgomery": write_montgomery,
    "object_cxr": write_object_cxr,
    "tbx11k": write_tbx11k,
}

__all__ = ["WRITERS", "Miniature", "write_dicom", "write_image", *(f"write_{n}" for n in WRITERS)]
