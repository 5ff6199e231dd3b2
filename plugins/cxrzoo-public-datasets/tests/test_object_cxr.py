"""object_cxr against torchxrayvision's ObjectCXR_Dataset on the same miniature train.csv."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from cxrzoo_public_datasets.testing import write_object_cxr

from cxrzoo.data import open_dataset


def test_counts_agree_with_torchxrayvision(tmp_path):
    xrv = pytest.importorskip("torchxrayvision", reason="torchxrayvision is not installed")
    mini = write_object_cxr(tmp_path / "o")
    with zipfile.ZipFile(tmp_path / "train.zip", "w") as z:
        for image in sorted((mini.root / "train").iterdir()):
            z.write(image, f"train/{image.name}")
    peer = xrv.datasets.ObjectCXR_Dataset(
        imgzippath=str(tmp_path / "train.zip"), csvpath=str(mini.root / "train.csv")
    )
    rows = open_dataset(mini.root).inventory().rows
    train = rows.loc[rows["list"] == "train_val"]
    assert len(train) == len(peer)
    assert int(train["Foreign Object"].sum()) == int(np.sum(peer.labels[:, 0]))
