"""The fast header reader gives pydicom's header exactly, or declines and leaves it to pydicom.

Every comparison is field by field between ``read_header_fast`` and
``read_header_with_pydicom`` (the reference, and the fallback). The inputs: phantom files
in every transfer syntax the project writes plus implicit VR copies, pydicom's own test
files, hand-made values at the edge of "clean", and corrupted copies (cut, a VR byte
flipped, a length made undefined). Some tests also assert that the fast reader is actually
taken, so that a reader which silently always declines fails them.
"""

from __future__ import annotations

import dataclasses
import struct
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from engine.dicom.headers import (
    InstanceHeader,
    read_header,
    read_header_fast,
    read_header_with_pydicom,
)
from engine.phantom import PhantomConfig, generate_study, write_study
from engine.phantom.dicom_out import TRANSFER_SYNTAXES

_ROOT = Path(pydicom.data.__file__).parent
_PYDICOM_FILES = sorted(Path(f) for f in get_testdata_files())
_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def _fields(header: InstanceHeader | None) -> dict | None:
    return None if header is None else dataclasses.asdict(header)


def assert_fast_equals_pydicom(path: Path) -> bool:
    """Fast header == pydicom header when the fast reader accepts; True if it accepted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = read_header_fast(path)
        reference = read_header_with_pydicom(path)
        combined = read_header(path)
    assert _fields(combined) == _fields(reference)
    if fast is None:
        return False
    assert reference is not None and reference.error is None
    for field in dataclasses.fields(InstanceHeader):
        assert getattr(fast, field.name) == getattr(reference, field.name), field.name
    return True


@pytest.fixture(scope="module")
def phantom_folders(tmp_path_factory) -> dict[str, Path]:
    """One small phantom study per written transfer syntax, plus implicit VR copies."""
    study = generate_study(31, PhantomConfig.fast(slices_min=120, slices_max=120))
    root = tmp_path_factory.mktemp("phantoms")
    folders = {name: write_study(study, root / name, transfer_syntax=name) for name in TRANSFER_SYNTAXES}
    implicit = root / "implicit"
    implicit.mkdir()
    for path in sorted(folders["explicit"].rglob("*.dcm"))[::4]:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(implicit / path.name, implicit_vr=True, little_endian=True, enforce_file_format=True)
    folders["implicit"] = implicit
    return folders


@pytest.mark.parametrize("syntax", [*TRANSFER_SYNTAXES, "implicit"])
def test_phantom_headers_equal_pydicom(phantom_folders, syntax):
    files = sorted(phantom_folders[syntax].rglob("*.dcm"))
    assert files
    taken = [assert_fast_equals_pydicom(path) for path in files]
    if syntax in ("explicit", "implicit"):
        assert all(taken), "the fast reader must take every native phantom file"
    else:
        assert not any(taken), "compressed files are pydicom's"


def test_pydicom_test_files_equal_or_decline():
    taken = [path for path in _PYDICOM_FILES if path.is_file() and assert_fast_equals_pydicom(path)]
    # CT_small.dcm, MR_small.dcm and others are plain native images: the reader must take some.
    assert len(taken) >= 20
    assert _ROOT / "test_files" / "CT_small.dcm" in taken


@pytest.fixture(scope="module")
def phantom_slice(phantom_folders) -> Path:
    """One axial slice of the explicit VR phantom: the base of the hand-made variants."""
    return sorted(phantom_folders["explicit"].rglob("002_*.dcm"))[5]


def _raw(vr: str, value: str | int | list | bytes) -> bytes:
    """The value bytes as a careless writer might store them (no validation)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return struct.pack("<h" if vr == "SS" else "<H", value)
    if isinstance(value, list):
        return b"".join(_raw(vr, item) for item in value) if all(isinstance(i, int) for i in value) else _raw(vr, "\\".join(value))
    data = value.encode("latin-1")
    return data + (b"\0" if vr == "UI" else b" ") * (len(data) % 2)


def _write(path: Path, source: Path, syntax, **changes) -> Path:
    """``source`` rewritten in ``syntax``; ``changes`` maps keyword -> (VR, value or None),
    the value stored as raw bytes so that malformed values are written as given."""
    implicit = syntax == ImplicitVRLittleEndian
    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    ds = pydicom.dcmread(path)  # now in ``syntax``: raw elements are written back as they are
    for keyword, (vr, value) in changes.items():
        tag = BaseTag(tag_for_keyword(keyword))
        if value is None:
            del ds[tag]
        else:
            data = _raw(vr, value)
            ds._dict[tag] = RawDataElement(tag, vr, len(data), data, 0, implicit, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True)
    return path


# Values the fast reader must either read exactly as pydicom does, or decline.
_VARIANTS = {
    "plain": {},
    "padded text": {"Modality": ("CS", "CT "), "Manufacturer": ("LO", "  ACME  ")},
    "multi-valued kernel": {"ConvolutionKernel": ("SH", ["B30f", " STANDARD"])},
    "empty optional": {"KVP": ("DS", ""), "Manufacturer": ("LO", ""), "SeriesNumber": ("IS", "")},
    "missing optional": {"KVP": ("DS", None), "ConvolutionKernel": ("SH", None)},
    "blank text": {"PatientPosition": ("CS", "  "), "ImageType": ("CS", ["", ""])},
    "empty part": {"ImageType": ("CS", ["ORIGINAL", "", "AXIAL"])},
    "exponent": {"SliceThickness": ("DS", "2.5E0"), "RescaleSlope": ("DS", "+1.")},
    "two kvps": {"KVP": ("DS", ["120", "140"])},
    "signed instance": {"InstanceNumber": ("IS", "+12")},
    "frames one": {"NumberOfFrames": ("IS", "1")},
    "frames many": {"NumberOfFrames": ("IS", "3")},
    "frames bad": {"NumberOfFrames": ("IS", "1A")},
    "ds letters": {"SliceThickness": ("DS", "2.5mm")},
    "ds nan": {"RescaleIntercept": ("DS", "nan")},
    "ds underscore": {"KVP": ("DS", "1_20")},
    "ds overflow": {"KVP": ("DS", "1e999")},
    "position short": {"ImagePositionPatient": ("DS", ["1", "2"])},
    "position empty part": {"ImagePositionPatient": ("DS", ["1", "", "3"])},
    "int not integral": {"SeriesNumber": ("IS", "1.5")},
    "latin-1 text": {"Manufacturer": ("LO", "Ger\u00e4t")},
    "control char": {"Modality": ("CS", "C\tT")},
    "padding unsigned": {"PixelPaddingValue": ("US", 63536)},
    "padding signed": {"PixelRepresentation": ("US", 1), "PixelPaddingValue": ("SS", -2000)},
    "padding no representation": {"PixelRepresentation": ("US", None), "PixelPaddingValue": ("US", 100)},
    "two rows": {"Rows": ("US", [128, 128])},
    "enhanced class": {"SOPClassUID": ("UI", "1.2.840.10008.5.1.4.1.1.2.1")},
    "charset utf8": {"SpecificCharacterSet": ("CS", "ISO_IR 192")},
    "charset cyrillic": {"SpecificCharacterSet": ("CS", "ISO_IR 144")},
    "no charset": {"SpecificCharacterSet": ("CS", None)},
    "rows as text": {"Rows": ("IS", "128")},
}
_MUST_TAKE = {
    "plain", "padded text", "multi-valued kernel", "empty optional", "missing optional",
    "blank text", "exponent", "two kvps", "signed instance", "frames one", "padding unsigned",
    "padding signed", "charset utf8", "no charset",
}


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian], ids=["explicit", "implicit"])
@pytest.mark.parametrize("variant", list(_VARIANTS))
def test_value_variants(tmp_path, phantom_slice, syntax, variant):
    path = _write(tmp_path / "variant.dcm", phantom_slice, syntax, **_VARIANTS[variant])
    taken = assert_fast_equals_pydicom(path)
    if variant in _MUST_TAKE:
        assert taken, f"the fast reader should read {variant!r}"


def _elements(data: bytes, explicit: bool) -> list[tuple[int, int, str | None]]:
    """(offset, tag, VR) of each top-level element before Pixel Data (meta included)."""
    found, position = [], 132
    while position + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, position)
        tag = group << 16 | element
        if tag == 0x7FE00010:
            break
        if group == 2 or explicit:
            vr = data[position + 4 : position + 6].decode()
            if vr in _LONG_VRS:
                length, start = struct.unpack_from("<L", data, position + 8)[0], position + 12
            else:
                length, start = struct.unpack_from("<H", data, position + 6)[0], position + 8
        else:
            vr, (length,), start = None, struct.unpack_from("<L", data, position + 4), position + 8
        found.append((position, tag, vr))
        position = start + length
    return found


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian], ids=["explicit", "implicit"])
def test_corrupted_files_never_crash_and_match_pydicom(tmp_path, phantom_slice, syntax):
    original = _write(tmp_path / "original.dcm", phantom_slice, syntax).read_bytes()
    elements = _elements(original, syntax == ExplicitVRLittleEndian)
    pixel_start = elements[-1][0] + 40
    variants: list[bytes] = []
    for cut in (0, 100, 130, 132, 140, 200, 400, 800, pixel_start - 8, pixel_start + 4, len(original) - 1):
        variants.append(original[:cut])
    for offset, tag, vr in elements:
        if vr is not None:  # a VR that is no VR, and one that is another (long) VR
            variants.append(original[: offset + 4] + b"\x01" + original[offset + 5 :])
            variants.append(original[: offset + 4] + b"OB" + original[offset + 6 :])
        if vr is None or vr in ("OB", "OW", "SQ", "UN"):  # a 4-byte length made undefined
            at = offset + (4 if vr is None else 8)
            variants.append(original[:at] + b"\xff\xff\xff\xff" + original[at + 4 :])
        else:  # an odd, and a too long, 2-byte length
            for length in (3, 0xFFFF):
                variants.append(original[: offset + 6] + struct.pack("<H", length) + original[offset + 8 :])
        if tag >> 16 != 2:  # the element header dropped: the walk loses step
            variants.append(original[:offset] + original[offset + 8 :])
    assert len(variants) > 100
    path = tmp_path / "corrupt.dcm"
    for data in variants:
        path.write_bytes(data)
        assert_fast_equals_pydicom(path)


def test_long_header_grows_the_read(tmp_path, phantom_slice):
    """A header past the first read (a big private element) is still read fast."""
    ds = pydicom.dcmread(phantom_slice)
    ds.add_new(0x00090010, "LO", "VCFSCREEN TEST")
    ds.add_new(0x00091001, "OB", b"\x00" * 50000)
    path = tmp_path / "long.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert assert_fast_equals_pydicom(path)
    assert read_header_fast(path).pixel_offset > 50000


def test_renamed_dicomdir_is_skipped(tmp_path):
    """A DICOMDIR is recognised by its media storage class too, not only by its name."""
    path = tmp_path / "index.dcm"
    path.write_bytes((_ROOT / "test_files" / "dicomdirtests" / "DICOMDIR").read_bytes())
    assert read_header_fast(path) is None
    assert read_header(path) is None
