"""SR content items (and other deep sequences) encoded straight to bytes (explicit VR little
endian, PS3.5 §7.1.2, §7.5).

The SR content tree (thousands of small elements) is the costly part of writing an SR with
pydicom Datasets or highdicom: every element is an object to build, check and encode. Here each
content item (PS3.3 C.17.3) is encoded once into bytes: code sequences are encoded once per
process (:func:`code_item`, cached), items and sequences have defined lengths. The tree is then
handed to pydicom as one raw Content Sequence element (:func:`content_sequence`), which pydicom
writes as it is. Reading the file back gives ordinary pydicom Datasets.

Every text value is encoded with the document's Specific Character Set (:class:`Text`).
No I/O here.
"""
from __future__ import annotations

import struct
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
from pydicom.charset import convert_encodings, encode_string
from pydicom.dataelem import RawDataElement
from pydicom.sr.coding import Code
from pydicom.tag import Tag
from pydicom.valuerep import format_number_as_ds

#: VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 Table 7.1-1).
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)  # item tag (FFFE,E000)

# tags used in content items, (group, element)
CODE_VALUE, CODING_SCHEME, CODE_MEANING = (0x0008, 0x0100), (0x0008, 0x0102), (0x0008, 0x0104)
REF_SOP_SEQ, REF_SOP_CLASS, REF_SOP_INSTANCE = (0x0008, 0x1199), (0x0008, 0x1150), (0x0008, 0x1155)
MAPPING_RESOURCE, TEMPLATE_ID = (0x0008, 0x0105), (0x0040, 0xDB00)
RELATIONSHIP, VALUE_TYPE, CONCEPT_NAME = (0x0040, 0xA010), (0x0040, 0xA040), (0x0040, 0xA043)
CONTINUITY, UID_VALUE, TEXT_VALUE, CONCEPT_CODE = (0x0040, 0xA050), (0x0040, 0xA124), (0x0040, 0xA160), (0x0040, 0xA168)
MEASURED_VALUE_SEQ, UNITS_SEQ = (0x0040, 0xA300), (0x0040, 0x08EA)
FLOAT_VALUE, NUMERIC_VALUE = (0x0040, 0xA161), (0x0040, 0xA30A)
CONTENT_TEMPLATE_SEQ, CONTENT_SEQ = (0x0040, 0xA504), (0x0040, 0xA730)
GRAPHIC_DATA, GRAPHIC_TYPE = (0x0070, 0x0022), (0x0070, 0x0023)


def element(tag: tuple[int, int], vr: str, value: bytes) -> bytes:
    """One explicit VR little endian element; ``value`` already padded to even length."""
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", tag[0], tag[1], vr.encode(), 0, len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError(f"({tag[0]:04X},{tag[1]:04X}) {vr} value of {len(value)} bytes, at most 65535 allowed")
    return struct.pack("<HH2sH", tag[0], tag[1], vr.encode(), len(value)) + value


def _pad(raw: bytes, fill: bytes = b" ") -> bytes:
    return raw + fill if len(raw) % 2 else raw


def ascii_element(tag: tuple[int, int], vr: str, text: str) -> bytes:
    """A CS/UI/DS/SH element of the default repertoire (UI padded with NUL, the others with space)."""
    return element(tag, vr, _pad(text.encode("ascii"), b"\x00" if vr == "UI" else b" "))


def us_element(tag: tuple[int, int], value: int) -> tuple[tuple[int, int], bytes]:
    return tag, element(tag, "US", struct.pack("<H", int(value)))


def fl_element(tag: tuple[int, int], values: np.ndarray | Sequence[float]) -> tuple[tuple[int, int], bytes]:
    return tag, element(tag, "FL", np.ascontiguousarray(values, dtype="<f4").reshape(-1).tobytes())


def cs_element(tag: tuple[int, int], text: str) -> tuple[tuple[int, int], bytes]:
    return tag, ascii_element(tag, "CS", text)


def raw_sequence(tag: tuple[int, int], items: Sequence[bytes]) -> RawDataElement:
    """A sequence of encoded items as one raw element that pydicom writes unchanged (the dataset
    needs :meth:`~pydicom.dataset.Dataset.set_original_encoding` explicit VR little endian)."""
    value = b"".join(items)
    return RawDataElement(Tag(tag[0], tag[1]), "SQ", len(value), value, 0, False, True)


def item(elements: Iterable[tuple[tuple[int, int], bytes]]) -> bytes:
    """A sequence item (defined length) of ``(tag, encoded element)`` pairs, written in tag order."""
    body = b"".join(enc for _, enc in sorted(elements, key=lambda p: p[0]))
    return _ITEM + struct.pack("<I", len(body)) + body


def sequence(tag: tuple[int, int], items: Sequence[bytes]) -> tuple[tuple[int, int], bytes]:
    """``(tag, encoded SQ element)`` of already encoded items."""
    return tag, element(tag, "SQ", b"".join(items))


class Text:
    """Encodes text values with one Specific Character Set (ASCII passes through)."""

    def __init__(self, encodings: tuple[str, ...]) -> None:
        self.encodings = encodings

    @classmethod
    def for_charset(cls, specific_character_set: str | Sequence[str] | None) -> "Text":
        """The encoder of a (0008,0005) Specific Character Set value (None: default repertoire)."""
        return cls(tuple(convert_encodings(specific_character_set or "ISO_IR 6")))

    def can_encode(self, text: str) -> bool:
        """Whether ``text`` is representable in this character set (ASCII always is)."""
        if text.isascii():
            return True
        for codec in self.encodings:  # Python codec names (pydicom's convert_encodings)
            try:
                text.encode(codec)
                return True
            except (UnicodeEncodeError, LookupError):
                continue
        return False

    def encode(self, text: str) -> bytes:
        return text.encode("ascii") if text.isascii() else encode_string(text, list(self.encodings))

    def element(self, tag: tuple[int, int], vr: str, text: str) -> tuple[tuple[int, int], bytes]:
        return tag, element(tag, vr, _pad(self.encode(text)))


@lru_cache(maxsize=4096)
def code_item(value: str, scheme: str, meaning: str, encodings: tuple[str, ...]) -> bytes:
    """The encoded item of a code sequence (Code Value, Coding Scheme Designator, Code Meaning)."""
    if len(value) > 16:
        raise ValueError(f"code value {value!r} has {len(value)} characters, at most 16 allowed (SH)")
    text = Text(encodings)
    return item([(CODE_VALUE, ascii_element(CODE_VALUE, "SH", value)),
                 (CODING_SCHEME, ascii_element(CODING_SCHEME, "SH", scheme)),
                 text.element(CODE_MEANING, "LO", meaning)])


def code_sequence(tag: tuple[int, int], code: Code, text: Text) -> tuple[tuple[int, int], bytes]:
    return sequence(tag, [code_item(code.value, code.scheme_designator, code.meaning, text.encodings)])


def _head(relationship: str | None, value_type: str, concept: Code, text: Text) -> list[tuple[tuple[int, int], bytes]]:
    out = [(VALUE_TYPE, ascii_element(VALUE_TYPE, "CS", value_type)), code_sequence(CONCEPT_NAME, concept, text)]
    if relationship is not None:
        out.append((RELATIONSHIP, ascii_element(RELATIONSHIP, "CS", relationship)))
    return out


def _with_children(parts: list[tuple[tuple[int, int], bytes]], children: Sequence[bytes]) -> bytes:
    if children:
        parts.append(sequence(CONTENT_SEQ, children))
    return item(parts)


def container(text: Text, relationship: str | None, concept: Code, children: Sequence[bytes],
              template: str | None = None) -> bytes:
    """A CONTAINER item (continuity CONTINUOUS), optionally naming its DCMR template."""
    parts = _head(relationship, "CONTAINER", concept, text)
    parts.append((CONTINUITY, ascii_element(CONTINUITY, "CS", "CONTINUOUS")))
    if template is not None:
        parts.append(sequence(CONTENT_TEMPLATE_SEQ, [item([(MAPPING_RESOURCE, ascii_element(MAPPING_RESOURCE, "CS", "DCMR")),
                                                          (TEMPLATE_ID, ascii_element(TEMPLATE_ID, "CS", template))])]))
    return _with_children(parts, children)


def code(text: Text, relationship: str, concept: Code, value: Code, children: Sequence[bytes] = ()) -> bytes:
    parts = _head(relationship, "CODE", concept, text)
    parts.append(code_sequence(CONCEPT_CODE, value, text))
    return _with_children(parts, children)


def text_item(text: Text, relationship: str, concept: Code, value: str) -> bytes:
    parts = _head(relationship, "TEXT", concept, text)
    parts.append(text.element(TEXT_VALUE, "UT", value))
    return item(parts)


def uidref(text: Text, relationship: str, concept: Code, uid: str) -> bytes:
    parts = _head(relationship, "UIDREF", concept, text)
    parts.append((UID_VALUE, ascii_element(UID_VALUE, "UI", uid)))
    return item(parts)


def num(text: Text, relationship: str, concept: Code, value: float, unit: Code, children: Sequence[bytes] = (),
        floating: bool = True) -> bytes:
    """A NUM item: Numeric Value (DS, at most 16 characters) and, with ``floating``, the exact
    Floating Point Value (FD)."""
    mv = [code_sequence(UNITS_SEQ, unit, text), (NUMERIC_VALUE, ascii_element(NUMERIC_VALUE, "DS", format_number_as_ds(float(value))))]
    if floating:
        mv.append((FLOAT_VALUE, element(FLOAT_VALUE, "FD", struct.pack("<d", float(value)))))
    parts = _head(relationship, "NUM", concept, text)
    parts.append(sequence(MEASURED_VALUE_SEQ, [item(mv)]))
    return _with_children(parts, children)


def image(text: Text, relationship: str, concept: Code, sop_class_uid: str, sop_instance_uid: str,
          children: Sequence[bytes] = ()) -> bytes:
    parts = _head(relationship, "IMAGE", concept, text)
    parts.append(sequence(REF_SOP_SEQ, [item([(REF_SOP_CLASS, ascii_element(REF_SOP_CLASS, "UI", sop_class_uid)),
                                               (REF_SOP_INSTANCE, ascii_element(REF_SOP_INSTANCE, "UI", sop_instance_uid))])]))
    return _with_children(parts, children)


def scoord(text: Text, relationship: str, concept: Code, graphic_type: str, points: np.ndarray,
           selected_from: bytes) -> bytes:
    """A SCOORD item: ``points`` (N, 2) image coordinates (column, row) as Graphic Data (FL),
    with its SELECTED FROM image item ``selected_from``."""
    data = np.ascontiguousarray(points, dtype="<f4").reshape(-1).tobytes()
    parts = _head(relationship, "SCOORD", concept, text)
    parts += [(GRAPHIC_DATA, element(GRAPHIC_DATA, "FL", data)), (GRAPHIC_TYPE, ascii_element(GRAPHIC_TYPE, "CS", graphic_type))]
    return _with_children(parts, [selected_from])


def content_sequence(items: Sequence[bytes]) -> RawDataElement:
    """The root's Content Sequence (:func:`raw_sequence`)."""
    return raw_sequence(CONTENT_SEQ, items)
