"""The Montgomery County tuberculosis set (Montgomery County, Maryland; NLM), as MontgomerySet.

Layout and source: see :mod:`cxrzoo_public_datasets._tuberculosis` (Jaeger et al., QIMS 2014).
``CXR_png/MCUCXR_0001_0.png`` …; ``ClinicalReadings/MCUCXR_0001_0.txt`` holds the lines
"Patient's Sex: M" and "Patient's Age: 044Y", then the reading. (ManualMask/ holds lung masks;
not read.)
"""

from __future__ import annotations

import re
from typing import ClassVar

from cxrzoo_public_datasets._tuberculosis import TuberculosisSet

_SEX = re.compile(r"Patient'?s Sex:\s*(\w*)", re.IGNORECASE)
_AGE = re.compile(r"Patient'?s Age:\s*(\S*)", re.IGNORECASE)


class Montgomery(TuberculosisSet):
    name: ClassVar[str] = "montgomery"
    title: ClassVar[str] = "Montgomery County tuberculosis set (NLM)"
    prefix: ClassVar[str] = "MCUCXR"
    folder: ClassVar[str] = "MontgomerySet"

    def demographics(self, text: str) -> tuple[str, str]:
        sex, age = _SEX.search(text), _AGE.search(text)
        return (sex.group(1) if sex else ""), (age.group(1) if age else "")
