"""The Shenzhen tuberculosis set (Shenzhen No.3 People's Hospital; NLM), as ChinaSet_AllFiles.

Layout and source: see :mod:`cxrzoo_public_datasets._tuberculosis` (Jaeger et al., QIMS 2014).
``CXR_png/CHNCXR_0001_0.png`` …; ``ClinicalReadings/CHNCXR_0001_0.txt`` starts with the sex and
age, such as "male 45yrs" (some write "Male 45 yrs" or "female 24yr"); then the reading.
"""

from __future__ import annotations

import re
from typing import ClassVar

from cxrzoo_public_datasets._tuberculosis import TuberculosisSet

_FIRST = re.compile(r"^\s*(male|female)[\s,]*(\d+)\s*(?:yrs?|years?)?", re.IGNORECASE)
_DAYS = re.compile(r"^\s*(male|female)[\s,]*(\d+)\s*(?:days?)", re.IGNORECASE)


class Shenzhen(TuberculosisSet):
    name: ClassVar[str] = "shenzhen"
    title: ClassVar[str] = "Shenzhen tuberculosis set (NLM)"
    prefix: ClassVar[str] = "CHNCXR"
    folder: ClassVar[str] = "ChinaSet_AllFiles"

    def demographics(self, text: str) -> tuple[str, str]:
        days = _DAYS.match(text)
        if days:
            return days.group(1), f"{days.group(2)}D"
        m = _FIRST.match(text)
        if m:
            return m.group(1), m.group(2)
        first = text.strip().splitlines()[0] if text.strip() else ""
        return "", first
