"""A byte-level header reader for the common file: one classic image, native little endian.

Scanning a folder reads a few attributes of hundreds of files; ``pydicom.dcmread`` spends
most of that time building element objects and converting values that are then thrown
away. Nearly every CT file in the field is a classic single-frame image in Explicit or
Implicit VR Little Endian, whose header is a flat run of defined-length elements in the
first few kilobytes. For those, this module walks the elements with ``struct`` over one
read of the file's head and keeps the raw bytes of the wanted tags and the place of the
Pixel Data.

The reader is deliberately narrow: whatever it does not fully understand raises
:class:`Declined`, and the caller reads the file with pydicom as before. It declines other
transfer syntaxes, DICOMDIRs, enhanced and multi-frame objects, command sets, undefined
lengths, unknown or unexpected VRs, odd lengths, out-of-order or truncated elements, a
header longer than :data:`_MAX_HEADER_BYTES`, and every value that is not clean (not
printable ASCII, a number that does not parse, the wrong count of numbers). Since a clean
value is read identically by every pydicom code path, the values returned here equal those
of ``engine.dicom.values`` on the dataset pydicom would build; and since a value that the
pydicom path would record as a problem is never clean, problems are always left to that
path, which words them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from struct import Struct
from typing import BinaryIO

from pydicom.datadict import dictionary_VR, tag_for_keyword

from engine.dicom.multiframe import (
    ENHANCED_CT_STORAGE,
    LEGACY_CONVERTED_ENHANCED_CT_STORAGE,
)

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
_SYNTAXES = {
    EXPLICIT_VR_LITTLE_ENDIAN.encode(): EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN.encode(): IMPLICIT_VR_LITTLE_ENDIAN,
}
_DICOMDIR_CLASS = b"1.2.840.10008.1.3.10"
_ENHANCED_CLASSES = frozenset({ENHANCED_CT_STORAGE, LEGACY_CONVERTED_ENHANCED_CT_STORAGE})

_FIRST_READ = 8192
"""Bytes read at once: the whole header of a typical CT file, so usually the only read."""
_MAX_HEADER_BYTES = 1 << 20
"""Headers longer than this (large private blobs) are left to pydicom."""

_SHORT_VRS = frozenset(
    (b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO")
    + (b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US")
)
"""Explicit VRs with a 2-byte length (PS3.5 7.1.2)."""
_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
"""Explicit VRs with 2 reserved bytes and a 4-byte length."""
_TEXT_VRS = frozenset({"CS", "UI", "LO", "SH"})

_EXPLICIT_HEAD = Struct("<HH2sH")
_IMPLICIT_HEAD = Struct("<HHL")
_LONG_LENGTH = Struct("<L")
_GROUP = Struct("<H")
_UNDEFINED_LENGTH = 0xFFFFFFFF

_META_GROUP = 0x0002
_TRANSFER_SYNTAX_TAG = 0x00020010
_MEDIA_CLASS_TAG = 0x00020002
_CHARSET_TAG = 0x00080005
_PIXEL_DATA_TAG = 0x7FE00010
_FLOAT_PIXEL_TAGS = (0x7FE00008, 0x7FE00009)
"""Float and Double Float Pixel Data: pydicom stops there too, but they are not native ints."""

_ASCII_CHARSETS = frozenset(
    {"", "ISO_IR 6", "ISO 2022 IR 6", "ISO_IR 100", "ISO 2022 IR 100", "ISO_IR 192"}
)
"""Character sets under which printable ASCII bytes decode to the same characters."""

_IS_PATTERN = re.compile(r"[+-]?\d{1,12}")
_DS_PATTERN = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


class Declined(Exception):
    """The file is not the common case this module reads; read it with pydicom instead."""


@dataclass(frozen=True)
class _Plan:
    """What to keep while walking, and the tags that decline.

    ``wanted`` maps a tag to its keyword, its dictionary VR, and the explicit VRs accepted
    for it: the dictionary's only (either of two for the ambiguous ``US or SS``)."""

    wanted: dict[int, tuple[str, str, frozenset[bytes]]]
    sequences: frozenset[int]
    keywords: frozenset[str]


@lru_cache(maxsize=8)
def _plan(keywords: tuple[str, ...]) -> _Plan:
    """Sequence keywords (functional groups) are not read: finding one declines the file."""
    wanted = {_CHARSET_TAG: ("SpecificCharacterSet", "CS", frozenset({b"CS"}))}
    sequences = set()
    for keyword in keywords:
        tag, vr = tag_for_keyword(keyword), dictionary_VR(keyword)
        if vr == "SQ":
            sequences.add(tag)
        else:
            wanted[tag] = (keyword, vr, frozenset(part.encode() for part in vr.split(" or ")))
    return _Plan(wanted, frozenset(sequences), frozenset(keywords) | {"SpecificCharacterSet"})


class _Head:
    """The first bytes of one file, extended on demand (most headers fit the first read)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.data = handle.read(_FIRST_READ)

    def extend(self, end: int) -> bytes:
        """The data, holding at least ``end`` bytes; Declined if the file is shorter."""
        if end > _MAX_HEADER_BYTES:
            raise Declined("header longer than the fast reader reads")
        size = min(max(end, 2 * len(self.data)), _MAX_HEADER_BYTES)
        self.data += self._handle.read(size - len(self.data))
        if len(self.data) < end:
            raise Declined("file ends inside the header")
        return self.data


@dataclass(frozen=True)
class FastValues:
    """The wanted values of one file, read the way ``engine.dicom.values`` reads them.

    ``text``, ``integer``, ``number`` and ``numbers`` mirror ``read_text``, ``read_int``,
    ``read_float`` and ``read_floats`` for clean values, and raise :class:`Declined` for
    any other value: an absent or empty element is None, as there.
    """

    transfer_syntax_uid: str
    pixel_offset: int
    pixel_length: int
    _elements: dict[str, tuple[str, bytes]]
    """keyword -> (VR, raw value bytes) of the wanted elements present."""
    _keywords: frozenset[str]

    def _element(self, keyword: str) -> tuple[str, bytes] | None:
        if keyword not in self._keywords:
            raise KeyError(f"{keyword} is not among the keywords the file was scanned for")
        return self._elements.get(keyword)

    def text(self, keyword: str) -> tuple[str, ...] | None:
        """Like ``read_text``: the stripped parts, None when absent or all blank."""
        element = self._element(keyword)
        if element is None:
            return None
        vr, raw = element
        if vr not in _TEXT_VRS:
            raise Declined(f"{keyword} has VR {vr}")
        parts = tuple(part.strip() for part in _clean_ascii(raw).split("\\"))
        return parts if any(parts) else None

    def integer(self, keyword: str) -> int | None:
        """Like ``read_int``, for IS text and single US/SS binary values."""
        element = self._element(keyword)
        if element is None:
            return None
        vr, raw = element
        if vr == "IS":
            pieces = _number_pieces(raw, _IS_PATTERN)
            return None if pieces is None else int(pieces[0])
        if vr == "US or SS":
            vr = self._implicit_us_or_ss()
        if vr not in ("US", "SS") or len(raw) != 2:
            raise Declined(f"{keyword} is not a single US/SS value")
        return int.from_bytes(raw, "little", signed=vr == "SS")

    def number(self, keyword: str) -> float | None:
        """Like ``read_float``: the first of the DS values."""
        values = self._decimals(keyword)
        return None if values is None else values[0]

    def numbers(self, keyword: str, count: int) -> tuple[float, ...] | None:
        """Like ``read_floats``: exactly ``count`` DS values (any other count declines)."""
        values = self._decimals(keyword)
        if values is not None and len(values) != count:
            raise Declined(f"{keyword} holds {len(values)} numbers, not {count}")
        return values

    def _decimals(self, keyword: str) -> tuple[float, ...] | None:
        element = self._element(keyword)
        if element is None:
            return None
        vr, raw = element
        if vr != "DS":
            raise Declined(f"{keyword} has VR {vr}")
        pieces = _number_pieces(raw, _DS_PATTERN)
        if pieces is None:
            return None
        values = tuple(float(piece) for piece in pieces)
        if not all(math.isfinite(value) for value in values):
            raise Declined(f"{keyword} overflows")
        return values

    def _implicit_us_or_ss(self) -> str:
        """An implicit-VR padding value is signed when PixelRepresentation is 1, as pydicom
        resolves it; without a PixelRepresentation of 0 or 1, pydicom's guess is left to it."""
        representation = self.integer("PixelRepresentation")
        if representation not in (0, 1):
            raise Declined("US or SS value without a PixelRepresentation of 0 or 1")
        return "SS" if representation else "US"


def _clean_ascii(raw: bytes) -> str:
    """The value without trailing NUL/space padding, if all of it is printable ASCII.

    Such text decodes the same under every supported character set, and every pydicom
    conversion (and ``values._fast_value``) then agrees once parts are stripped."""
    body = raw.rstrip(b"\0 ")
    if not body.isascii():
        raise Declined("value is not ASCII")
    text = body.decode("ascii")
    if not text.isprintable():
        raise Declined("value holds control characters")
    return text


def _number_pieces(raw: bytes, pattern: re.Pattern[str]) -> list[str] | None:
    """The stripped pieces of an IS/DS value, all matching ``pattern``; None when blank.

    A piece that does not match (letters, an empty piece, ``nan``, ``1_0``) declines:
    explicit and implicit VR files would then be read differently by pydicom, or produce a
    problem, and both are the pydicom path's business."""
    text = _clean_ascii(raw)
    if not text.strip():
        return None
    pieces = [piece.strip() for piece in text.split("\\")]
    if not all(pattern.fullmatch(piece) for piece in pieces):
        raise Declined("number not clean")
    return pieces


def scan(path: Path, keywords: Sequence[str]) -> FastValues:
    """Walk the header of ``path`` and return the values of ``keywords``.

    Raises :class:`Declined` for anything but a single-frame image in Explicit or
    Implicit VR Little Endian with a Part 10 header (see the module docstring)."""
    plan = _plan(tuple(keywords))
    try:
        with path.open("rb") as handle:
            return _scan(_Head(handle), plan)
    except OSError as exc:
        raise Declined(f"cannot read the file: {exc}") from exc


def _scan(head: _Head, plan: _Plan) -> FastValues:
    """The checks, in file order: Part 10 marker, file meta (transfer syntax, DICOMDIR),
    the dataset walk, then the values that make a file unusual (character set, enhanced
    storage class, several frames)."""
    data = head.data
    if data[128:132] != b"DICM":
        raise Declined("no Part 10 marker")
    meta, position = _walk_meta(head, 132)
    syntax_vr, syntax_uid = meta.get(_TRANSFER_SYNTAX_TAG, (b"", b""))
    syntax = _SYNTAXES.get(syntax_uid.rstrip(b"\0 ")) if syntax_vr == b"UI" else None
    if syntax is None:
        raise Declined("transfer syntax other than native little endian")
    if _DICOMDIR_CLASS in meta.get(_MEDIA_CLASS_TAG, (b"", b""))[1]:
        raise Declined("DICOMDIR")
    explicit = syntax == EXPLICIT_VR_LITTLE_ENDIAN
    raw, pixel_offset, pixel_length = _walk_dataset(head, position, explicit, plan)
    elements = {
        plan.wanted[tag][0]: (vr.decode() if vr is not None else plan.wanted[tag][1], value)
        for tag, (vr, value) in raw.items()
    }
    values = FastValues(syntax, pixel_offset, pixel_length, elements, plan.keywords)
    charsets = values.text("SpecificCharacterSet") or ()
    if not set(charsets) <= _ASCII_CHARSETS:
        raise Declined("character set not known to be ASCII-compatible")
    if _first(values.text("SOPClassUID")) in _ENHANCED_CLASSES:
        raise Declined("enhanced multi-frame storage")
    if values.integer("NumberOfFrames") not in (None, 1):
        raise Declined("multi-frame image")
    return values


def _first(parts: tuple[str, ...] | None) -> str | None:
    return parts[0] if parts else None


def _walk_meta(head: _Head, position: int) -> tuple[dict[int, tuple[bytes, bytes]], int]:
    """(VR, raw value) of the group-0002 elements (always explicit VR), and where they end."""
    data = head.data
    meta: dict[int, tuple[bytes, bytes]] = {}
    previous = -1
    while True:
        if position + 12 > len(data):
            data = head.extend(position + 12)
        group = _GROUP.unpack_from(data, position)[0]
        if group != _META_GROUP:
            if not meta:
                raise Declined("no file meta information")
            return meta, position
        group, element, vr, length, start = _explicit_element(data, position)
        tag = group << 16 | element
        if tag <= previous or length == _UNDEFINED_LENGTH or length & 1:
            raise Declined("unusual file meta element")
        end = start + length
        if end > len(data):
            data = head.extend(end)
        meta[tag] = (vr, data[start:end])
        previous, position = tag, end


def _explicit_element(data: bytes, position: int) -> tuple[int, int, bytes, int, int]:
    """Group, element, VR, value length and value offset of the explicit-VR element header at
    ``position`` (the caller has at least 12 bytes there)."""
    group, element, vr, length = _EXPLICIT_HEAD.unpack_from(data, position)
    if vr in _LONG_VRS:
        return group, element, vr, _LONG_LENGTH.unpack_from(data, position + 8)[0], position + 12
    if vr in _SHORT_VRS:
        return group, element, vr, length, position + 8
    raise Declined("unknown VR")


def _walk_dataset(
    head: _Head, position: int, explicit: bool, plan: _Plan
) -> tuple[dict[int, tuple[bytes | None, bytes]], int, int]:
    """Raw (VR, value) of the wanted top-level elements, and the Pixel Data offset and length.

    Unwanted elements, defined-length sequences included, are stepped over by their length,
    as pydicom does with ``specific_tags``. Only elements in ascending tag order are read,
    so a duplicated or misplaced element (which pydicom would resolve its own way)
    declines."""
    data = head.data
    if position + 12 > len(data):
        data = head.extend(position + 12)
    if int.from_bytes(data[position : position + 2], "little") < 0x0008:
        raise Declined("command set or unexpected group before the dataset")
    if not explicit and _looks_explicit(data[position + 4 : position + 6]):
        raise Declined("implicit VR declared but the first element looks explicit")
    wanted, sequences = plan.wanted, plan.sequences
    found: dict[int, tuple[bytes | None, bytes]] = {}
    previous = -1
    vr: bytes | None = None
    while True:
        if position + 12 > len(data):
            data = head.extend(position + 12)
        if explicit:
            group, element, vr, length, start = _explicit_element(data, position)
        else:
            group, element, length = _IMPLICIT_HEAD.unpack_from(data, position)
            start = position + 8
        tag = group << 16 | element
        if tag <= previous or length == _UNDEFINED_LENGTH or length & 1:
            raise Declined("element out of order, of undefined length or of odd length")
        if tag >= _FLOAT_PIXEL_TAGS[0]:
            if tag == _PIXEL_DATA_TAG:
                if previous < 0 or (explicit and vr not in (b"OB", b"OW")):
                    raise Declined("pixel data without header, or of an unexpected VR")
                return found, start, length
            if tag in _FLOAT_PIXEL_TAGS or tag > _PIXEL_DATA_TAG:
                raise Declined("no native Pixel Data")
        end = start + length
        if tag in wanted:
            if explicit and vr not in wanted[tag][2]:
                raise Declined("VR differs from the dictionary")
            if end > len(data):
                data = head.extend(end)
            found[tag] = (vr, data[start:end])
        elif tag in sequences:
            raise Declined("functional group sequences (enhanced object)")
        previous, position = tag, end


def _looks_explicit(vr_bytes: bytes) -> bool:
    """pydicom's test: two capital letters where implicit VR has its length."""
    return all(0x40 < byte < 0x5B for byte in vr_bytes)
