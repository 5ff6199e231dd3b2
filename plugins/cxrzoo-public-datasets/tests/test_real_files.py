"""Each reader on the real published label files torchxrayvision ships, against torchxrayvision.

The torchxrayvision wheel carries real label files in ``torchxrayvision/data/`` (CheXpert train,
PadChest 160K, RSNA stage 2, SIIM train-rle, VinBigData train, NIH Data_Entry_2017_v2020). Each
test lays one file out in ``tmp_path`` as the reader expects it (nothing of it is kept in this
repository), reads it with cxrzoo and with torchxrayvision's own dataset class, and compares rows,
images, patients and, finding by finding, positives / negatives / unknowns. Every difference is
one the reader's docstring names, and is asserted as such.

What cxrzoo reads is compared at the reader's output (every row with readable labels, one per
image): the catalog then keeps those whose file is found. Where the images are few enough, a
catalog over empty placeholder files checks that every row finds its file by its real name.
Skipped (with the reason) when torchxrayvision is not installed.
"""

from __future__ import annotations

import gzip
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

xrv = pytest.importorskip(
    "torchxrayvision", reason="torchxrayvision is not installed (pip install torchxrayvision)"
)

pytestmark = pytest.mark.realfiles
DATA = Path(xrv.__file__).parent / "data"


def shipped(name: str) -> Path:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"torchxrayvision {xrv.__version__} does not ship {name}")
    return path


def gunzip(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(src, "rb") as f, open(dst, "wb") as out:
        shutil.copyfileobj(f, out)
    return dst


def usable(source) -> pd.DataFrame:
    """What a catalog keeps when every file is present: one row per image, labels readable."""
    rows = source.inventory().rows
    rows = rows.loc[~rows["image"].duplicated()]
    return rows.loc[rows["unknown_labels"] == ""].reset_index(drop=True)


def tally(values) -> tuple[int, int, int]:
    """(positives, negatives, unknowns)."""
    v = np.asarray(values, dtype=np.float64)
    return int((v == 1).sum()), int((v == 0).sum()), int(np.isnan(v).sum())


def placeholders(folder: Path, names, suffix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}{suffix}").touch()


def report(name: str, ours: pd.DataFrame, peer, pairs: dict[str, str]) -> None:
    """Print the comparison table (run pytest with -s to see it)."""
    print(f"\n{name}: cxrzoo {len(ours)} images / {ours['patient'].nunique()} patients; "
          f"torchxrayvision {len(peer.labels)} rows")  # fmt: skip
    for theirs, mine in pairs.items():
        j = list(peer.pathologies).index(theirs)
        print(f"  {theirs:<28} xrv {tally(peer.labels[:, j])}  cxrzoo {tally(ours[mine])}")


# ---------------------------------------------------------------------------------------------


def test_chexpert_train(tmp_path):
    from cxrzoo_public_datasets.chexpert import CheXpert

    gunzip(shipped("chexpert_train.csv.gz"), tmp_path / "CheXpert-v1.0-small" / "train.csv")
    ours = usable(CheXpert(tmp_path))
    peer = xrv.datasets.CheX_Dataset(imgpath=str(tmp_path), views=["*"], unique_patients=False)
    assert len(ours) == len(peer) == 223414
    assert ours["patient"].nunique() == peer.csv["patientid"].nunique() == 64540
    healthy = (ours["No Finding"] == 1).to_numpy()
    pairs = {p: p for p in peer.pathologies} | {"Effusion": "Effusion"}
    report("chexpert", ours, peer, pairs)
    for j, theirs in enumerate(peer.pathologies):
        mine = ours[theirs].to_numpy()
        if theirs == "Support Devices":  # the one finding torchxrayvision leaves as published
            assert tally(peer.labels[:, j]) == tally(mine)
            continue
        # Documented difference: torchxrayvision sets every finding but Support Devices negative
        # on a "No Finding" image, where the file leaves it blank (unknown) or uncertain.
        assert tally(peer.labels[:, j]) == (
            int((mine[~healthy] == 1).sum()),
            int((mine[~healthy] == 0).sum()) + int(healthy.sum()),
            int(np.isnan(mine[~healthy]).sum()),
        ), theirs
        assert int((mine[healthy] == 1).sum()) == 0  # no finding is positive on those images


def test_padchest_160k(tmp_path):
    from cxrzoo_public_datasets.padchest import PadChest, map_term, parse_labels

    shutil.copy(shipped("PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"), tmp_path)
    source = PadChest(tmp_path)
    inventory = source.inventory()
    ours = usable(source).set_index("image")
    peer = xrv.datasets.PC_Dataset(imgpath=str(tmp_path), views=["*"], unique_patients=False)
    ids = peer.csv["ImageID"].to_numpy()
    # Rows: torchxrayvision keeps the publishers' "exclude" rows and the rows whose Labels is
    # "['']" (as all-negative); cxrzoo reports them (skipped_row, unknown_label).
    excluded = {p["image"] for p in inventory.problems["skipped_row"]}
    theirs_only = set(ids) - set(ours.index)
    not_a_list = set(inventory.rows.loc[inventory.rows["unknown_labels"] != "", "image"])
    assert theirs_only <= excluded | not_a_list and len(theirs_only) == 2046
    # torchxrayvision drops patients born 10 years or less before 2019 (or of unknown birth year)
    # and a list of 21 broken files; cxrzoo reads those rows (the catalog finds broken files).
    raw = pd.read_csv(tmp_path / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz",
                      usecols=["ImageID", "PatientBirth"], low_memory=False).drop_duplicates("ImageID")  # fmt: skip
    young = set(raw.loc[~(2019 - raw["PatientBirth"] > 10), "ImageID"])
    ours_only = set(ours.index) - set(ids)
    assert len(ours_only) == 2099 and len(ours_only - young) <= 21
    assert len(ours) == 158669 and len(peer) == 158616
    keep = pd.Index(ids).isin(ours.index)  # (np.isin on object arrays compares all pairs)
    ids, labels = ids[keep], peer.labels[keep]
    terms = peer.csv.loc[keep, "Labels"].map(parse_labels).tolist()
    same = ["Atelectasis", "Aortic Elongation", "Bronchiectasis", "Cardiomegaly", "Fibrosis", "Granuloma",
            "Hernia", "Pleural_Thickening", "Pneumonia", "Pneumothorax", "Scoliosis", "Tuberculosis"]  # fmt: skip
    broader_here = {"Edema": {"heart insufficiency"}, "Support Devices": None}
    broader_there = ["Emphysema", "Fracture", "Hilar Enlargement", "Infiltration", "Mass", "Nodule"]
    crossed = {"Consolidation": ("alveolar pattern", "air bronchogram"),
               "Effusion": ("costophrenic angle blunting", "pericardial effusion")}  # fmt: skip
    common = SimpleNamespace(pathologies=peer.pathologies, labels=labels, __len__=None)
    report(
        "padchest (rows both read)",
        ours.loc[ids].reset_index(),
        common,
        {p: p for p in peer.pathologies if p in ours},
    )
    checked = set()
    for j, name in enumerate(peer.pathologies):
        if name not in ours:
            continue
        mine, theirs = ours.loc[ids, name].to_numpy(), labels[:, j]
        here = np.flatnonzero((mine == 1) & (theirs == 0))
        there = np.flatnonzero((mine == 0) & (theirs == 1))
        if name in same:
            assert len(here) == len(there) == 0, name
        elif name in broader_here:
            assert len(there) == 0 and len(here) > 0, name
            for i in here:  # each extra positive holds a term cxrzoo maps to the finding
                extra = {t for t in terms[i] if map_term(t) == name}
                assert extra and (broader_here[name] is None or extra & broader_here[name]), (name, terms[i])
        elif name in broader_there:  # torchxrayvision matches substrings ("subcutaneous emphysema")
            assert len(here) == 0 and len(there) > 0, name
        else:
            ours_term, their_term = crossed[name]
            assert all(ours_term in terms[i] for i in here), name
            assert all(any(their_term in t for t in terms[i]) or "air bronchogram" in terms[i] for i in there)
        checked.add(name)
    assert checked == set(same) | set(broader_here) | set(broader_there) | set(crossed)


def test_rsna_stage_2(tmp_path):
    from cxrzoo_public_datasets.rsna_pneumonia import IMAGES, RsnaPneumonia

    with zipfile.ZipFile(shipped("kaggle_stage_2_train_labels.csv.zip")) as z:
        z.extract("stage_2_train_labels.csv", tmp_path)
    source = RsnaPneumonia(tmp_path, headers=False)
    ours = usable(source)
    peer = xrv.datasets.RSNA_Pneumonia_Dataset(imgpath=str(tmp_path), views=["*"])
    report("rsna_pneumonia", ours, peer, {"Pneumonia": "Pneumonia", "Lung Opacity": "Lung Opacity"})
    assert len(ours) == len(peer) == ours["patient"].nunique() == 26684
    j = list(peer.pathologies).index("Pneumonia")
    assert tally(peer.labels[:, j]) == tally(ours["Pneumonia"]) == (6012, 20672, 0)
    # Documented difference: Lung Opacity is unknown, not negative, where Target is 0.
    j = list(peer.pathologies).index("Lung Opacity")
    assert tally(peer.labels[:, j]) == (6012, 20672, 0) and tally(ours["Lung Opacity"]) == (6012, 0, 20672)
    placeholders(tmp_path / IMAGES, ours["image"], ".dcm")
    catalog = source.catalog()
    assert catalog.images == 26684 and not catalog.problems["missing"]


def test_siim_train_rle(tmp_path):
    from cxrzoo_public_datasets.siim_pneumothorax import IMAGES, SiimPneumothorax

    gunzip(shipped("siim-pneumothorax-train-rle.csv.gz"), tmp_path / "train-rle.csv")
    (tmp_path / IMAGES).mkdir()
    source = SiimPneumothorax(tmp_path, headers=False)
    ours = usable(source)
    peer = xrv.datasets.SIIM_Pneumothorax_Dataset(imgpath=str(tmp_path / IMAGES), unique_patients=False)
    report("siim_pneumothorax", ours, peer, {"Pneumothorax": "Pneumothorax"})
    # Documented difference: torchxrayvision has one row per mask (12954), cxrzoo one per image.
    assert len(peer) == 12954 and len(ours) == peer.csv["ImageId"].nunique() == 12047
    per_image = pd.Series(peer.labels[:, 0]).groupby(peer.csv["ImageId"].to_numpy()).max()
    assert tally(per_image) == tally(ours["Pneumothorax"]) == (2669, 9378, 0)
    for k, image in enumerate(ours["image"]):  # the download's study/series folders
        placeholders(tmp_path / IMAGES / f"1.2.{k % 7}" / f"1.3.{k}", [image], ".dcm")
    catalog = source.catalog()
    assert catalog.images == 12047 and not catalog.problems["missing"]


@pytest.mark.parametrize("vote", ["any", "majority"])
def test_vinbigdata_train(tmp_path, vote):
    from cxrzoo_public_datasets.vindr_cxr import VinDrCxr

    from cxrzoo.labels import canonical

    gunzip(shipped("vinbigdata-train.csv.gz"), tmp_path / "train.csv")
    (tmp_path / "train").mkdir()
    source = VinDrCxr(tmp_path, vote=vote, headers=False)
    ours = usable(source)
    peer = xrv.datasets.VinDr_Dataset(imgpath=str(tmp_path / "train"))
    pairs = {p: canonical(p) or p for p in peer.pathologies}
    pairs["Nodule/Mass"] = "Mass"
    report(f"vindr_cxr (Kaggle, vote={vote})", ours, peer, pairs)
    assert len(ours) == len(peer) == ours["patient"].nunique() == 15000
    for j, (theirs, mine) in enumerate(pairs.items()):
        if vote == "any":  # torchxrayvision's rule: positive when any radiologist marked it
            assert tally(peer.labels[:, j]) == tally(ours[mine]), theirs
        else:  # documented: a majority gives fewer positives, never more
            assert tally(ours[mine])[0] < tally(peer.labels[:, j])[0], theirs
    if vote == "majority":
        placeholders(tmp_path / "train", ours["image"], ".dicom")
        catalog = source.catalog()
        assert catalog.images == 15000 and not catalog.problems["missing"]


def test_nih14_v2020(tmp_path):
    from cxrzoo.data.nih14 import Nih14

    gunzip(shipped("Data_Entry_2017_v2020.csv.gz"), tmp_path / "Data_Entry_2017_v2020.csv")
    (tmp_path / "images").mkdir()
    ours = usable(Nih14(tmp_path))
    peer = xrv.datasets.NIH_Dataset(imgpath=str(tmp_path / "images"), views=["*"], unique_patients=False)
    report("nih14", ours, peer, {p: p for p in peer.pathologies})
    assert len(ours) == len(peer) == 112120
    assert ours["patient"].nunique() == peer.csv["patientid"].nunique() == 30805
    for j, name in enumerate(peer.pathologies):
        assert tally(peer.labels[:, j]) == tally(ours[name]), name


def test_nih14_google_relabels(tmp_path):
    from cxrzoo.data.nih14 import Nih14

    gunzip(
        shipped("google2019_nih-chest-xray-labels.csv.gz"), tmp_path / "google2019_nih-chest-xray-labels.csv"
    )
    gunzip(shipped("Data_Entry_2017_v2020.csv.gz"), tmp_path / "Data_Entry_2017_v2020.csv")
    source = Nih14(tmp_path, labels="google2019")
    ours = usable(source)
    peer = xrv.datasets.NIH_Google_Dataset(imgpath=str(tmp_path), views=["*"], unique_patients=False)
    pairs = {"Fracture": "Fracture", "Pneumothorax": "Pneumothorax", "Lung Opacity": "Lung Opacity",
             "Nodule/Mass": "Mass"}  # fmt: skip
    report("nih14 (labels=google2019)", ours, peer, pairs)
    assert len(ours) == len(peer) == 4376 and ours["patient"].nunique() == 1695
    for theirs, mine in pairs.items():
        assert tally(peer.labels[:, list(peer.pathologies).index(theirs)]) == tally(ours[mine]), theirs
    assert ours["list"].value_counts().to_dict() == {"val": 2414, "test": 1962}
    (tmp_path / "images").mkdir()
    placeholders(tmp_path / "images", ours["image"].str.removesuffix(".png"), ".png")
    catalog = source.catalog()
    assert catalog.images == 4376 and not catalog.problems["missing"]
    assert list(catalog.table.columns[-4:]) == list(pairs.values())


def test_openi_reports(tmp_path):
    from cxrzoo_public_datasets.openi import OpenI

    shutil.copy(shipped("NLMCXR_reports.tgz"), tmp_path)
    source = OpenI(tmp_path)
    ours = usable(source)
    peer = xrv.datasets.Openi_Dataset(imgpath=str(tmp_path), views=["*"], unique_patients=False)
    pairs = {p: p for p in peer.pathologies}
    report("openi", ours, peer, pairs)
    assert len(ours) == len(peer) == 7470
    assert ours["patient"].nunique() == peer.csv["uid"].nunique() == 3851
    for j, name in enumerate(peer.pathologies):
        assert tally(peer.labels[:, j]) == tally(ours[name]), name
    placeholders(tmp_path / "NLMCXR_png", ours["image"], ".png")
    catalog = source.catalog()
    assert catalog.images == 7470 and not catalog.problems["missing"]
