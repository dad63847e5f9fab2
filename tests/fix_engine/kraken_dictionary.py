"""QuickFIX's standard FIX 4.4 data dictionary plus Kraken's documented extensions.

Kraken's market data is FIX 4.4 with a few additions. Each one is listed here with the
Kraken page that documents it (docs/fix.md). The test validates every message against the
patched dictionary. It also checks that the *unpatched* standard dictionary accepts every
message our initiator sends, and every sim message that has no Kraken addition. That way
each deviation from plain FIX 4.4 is deliberate and known.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

STANDARD = Path(__file__).resolve().parent.parent / "data" / "fix" / "FIX44.xml"

# (number, name, type, enum values): fields Kraken adds to FIX 4.4
EXTRA_FIELDS = [
    (2446, "AggressorSide", "CHAR", {"1": "BUY", "2": "SELL"}),          # mdir
    (5041, "ChecksumOrderBook", "STRING", {}),                           # mdir, checksums guide
    (5060, "MDEntryTimestamp", "STRING", {}),                            # mdsfr (L3)
    (5273, "MDEntryTimeQueue", "STRING", {}),                            # mdsfr (L3)
]
# group fields Kraken adds to the 268 groups of W (MDFullGrp) and X (MDIncGrp)
SNAPSHOT_GROUP_EXTRA = ["MDEntryID", "MDEntryTimestamp", "MDEntryTimeQueue"]
INCREMENTAL_GROUP_EXTRA = ["MDEntryTimestamp", "MDEntryTimeQueue", "AggressorSide", "OrdType"]
# X carries Symbol (55) and ChecksumOrderBook (5041) at message level (mdir example)
INCREMENTAL_MESSAGE_EXTRA = ["Symbol", "ChecksumOrderBook"]
# MDReqRejReason (281): Kraken's B (Level3 not available) and C (trade not available) are
# standard FIX 4.4 codes (B, C = unsupported OpenCloseSettlFlag / MDImplicitDelete) given a
# new meaning, so the dictionary needs no change for them (docs/fix.md).


def _group(root: ET.Element, component: str) -> ET.Element:
    group = root.find(f"./components/component[@name='{component}']/group[@name='NoMDEntries']")
    if group is None:
        raise LookupError(f"{component}/NoMDEntries not in {STANDARD}")
    return group


def write_kraken_dictionary(path: Path) -> Path:
    """Write the patched dictionary to ``path`` and return it."""
    tree = ET.parse(STANDARD)
    root = tree.getroot()
    fields = root.find("./fields")
    if fields is None:
        raise LookupError(f"no <fields> in {STANDARD}")
    for number, name, kind, values in EXTRA_FIELDS:
        element = ET.SubElement(fields, "field", number=str(number), name=name, type=kind)
        for enum, description in values.items():
            ET.SubElement(element, "value", enum=enum, description=description)
    for component, extra in (("MDFullGrp", SNAPSHOT_GROUP_EXTRA),
                             ("MDIncGrp", INCREMENTAL_GROUP_EXTRA)):
        group = _group(root, component)
        present = {f.get("name") for f in group.findall("field")}
        for name in extra:
            if name not in present:
                ET.SubElement(group, "field", name=name, required="N")
    message = root.find("./messages/message[@msgtype='X']")
    if message is None:
        raise LookupError("message X not in the dictionary")
    for name in INCREMENTAL_MESSAGE_EXTRA:
        ET.SubElement(message, "field", name=name, required="N")
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path
