"""tbx11k against torchxrayvision's TBX11K_Dataset on the same miniature COCO files."""

from __future__ import annotations

import numpy as np
import pytest
from cxrzoo_public_datasets.testing import write_tbx11k

from cxrzoo.data import open_dataset


@pytest.mark.parametrize("split, listed", [("train", "train_val"), ("val", "val")])
def test_counts_agree_with_torchxrayvision(tmp_path, split, listed):
    xrv = pytest.importorskip("torchxrayvision", reason="torchxrayvision is not installed")
    mini = write_tbx11k(tmp_path / "t")
    peer = xrv.datasets.TBX11K_Dataset(imgpath=str(mini.root), split=split)
    rows = open_dataset(mini.root).inventory().rows
    rows = rows.loc[rows["list"] == listed]
    assert len(rows) == len(peer)
    pairs = {"Tuberculosis": "Tuberculosis", "ActiveTuberculosis": "Active Tuberculosis",
             "ObsoletePulmonaryTuberculosis": "Obsolete Pulmonary Tuberculosis"}  # fmt: skip
    for theirs, mine in pairs.items():
        j = peer.pathologies.index(theirs)
        assert int(np.sum(peer.labels[:, j])) == int(rows[mine].sum()), theirs
