"""The two NLM tuberculosis sets share one layout; :mod:`.shenzhen` and :mod:`.montgomery` read it.

Layout (Jaeger et al., "Two public chest X-ray datasets for computer-aided screening of
pulmonary diseases", Quantitative Imaging in Medicine and Surgery 4(6), 2014; the NLM/LHNCBC
download page and the README of each set)::

    ChinaSet_AllFiles/  or  MontgomerySet/
      CXR_png/CHNCXR_0001_0.png            _0 = normal, _1 = manifestation of tuberculosis
      ClinicalReadings/CHNCXR_0001_0.txt   the patient's sex and age, then the reading

The file name is the metadata: the label is its _0/_1 suffix. The readings' first lines are
"male 45yrs" (Shenzhen) or "Patient's Sex: M" / "Patient's Age: 044Y" (Montgomery). Every image
is a different patient; there is no official split. Labels: Tuberculosis (the suffix) and
No Finding (1 for _0, 0 for _1: the normal images are normal radiographs).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxrzoo.data.base import DatasetError, DatasetSource, Inventory, scan_tree
from cxrzoo.data.csvfiles import parse_ages
from cxrzoo.data.readers import build_rows, locate, normalise_sex


class TuberculosisSet(DatasetSource):
    """Base of the NLM tuberculosis readers: ``prefix`` names the set's files."""

    labels: ClassVar[tuple[str, ...]] = ("Tuberculosis", "No Finding")
    prefix: ClassVar[str] = ""
    folder: ClassVar[str] = ""

    @classmethod
    def detect(cls, root: Path) -> bool:
        images = locate(root, "CXR_png", cls.folder) / "CXR_png"
        if not images.is_dir():
            return False
        with os.scandir(images) as entries:
            return any(e.name.startswith(cls.prefix + "_") for e in entries)

    def demographics(self, text: str) -> tuple[str, str]:  # pragma: no cover - interface
        """``(sex, age text)`` from a reading's text."""
        raise NotImplementedError

    def inventory(self) -> Inventory:
        root = locate(self._folder(), "CXR_png", self.folder)
        images = root / "CXR_png"
        if not images.is_dir():
            raise DatasetError(f"No CXR_png folder in {self.root}: not the {self.name} set")
        problems: dict[str, list[Any]] = {}
        files = scan_tree(images, suffixes=(".png",), strip_suffix=True, problems=problems)
        readings = root / "ClinicalReadings"
        texts = (
            scan_tree(readings, suffixes=(".txt",), strip_suffix=True)
            if readings.is_dir()
            else files.iloc[:0]
        )
        names = sorted(set(files["image"]) | set(texts["image"]))
        path_of = dict(zip(texts["image"], texts["path"], strict=True))
        pattern = re.compile(rf"^{re.escape(self.prefix)}_(\d+)_(\d)$")
        matrix = np.full((len(names), 2), np.nan, dtype=np.float32)
        unknown = np.full(len(names), "", dtype=object)
        patient, sex, age, reading = [], [], [], []
        for i, name in enumerate(names):
            m = pattern.match(name)
            if m is None or m.group(2) not in "01":
                unknown[i] = f"file name {name!r} does not end in _0 or _1"
                patient.append(name)
            else:
                tb = float(m.group(2))
                matrix[i] = (tb, 1.0 - tb)
                patient.append(f"{self.prefix}_{m.group(1)}")
            text = ""
            if name in path_of:
                try:
                    text = Path(path_of[name]).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    text = ""
            s, a = self.demographics(text)
            sex.append(s)
            age.append(a)
            reading.append(" ".join(text.split())[:200])
        ids = pd.Series(names, dtype=object)
        line = np.ones(len(names), dtype=np.int64)
        txt = [path_of.get(n, str(images / f"{n}.png")) for n in names]
        rows = build_rows(
            self.label_names,
            matrix,
            image=names,
            patient=patient,
            row=line,
            age=parse_ages(
                pd.Series(age, dtype=object), ids, line, problems, readings, "age (ClinicalReadings)"
            ),
            sex=normalise_sex(pd.Series(sex, dtype=object)),
            view="PA",
            unknown=unknown,
            finding=np.where(unknown != "", unknown, ""),
            file=txt,
        )
        return Inventory(
            rows=rows, files=files, metadata_file=str(readings), has_lists=False, problems=problems
        )
