"""Reading DICOM headers cheaply, before any pixel is decoded.

Choosing a series needs only a few attributes of each instance, so a folder is scanned with
``stop_before_pixels`` and a short list of tags; the pixels are decoded later, only for the
chosen series, from the path kept in each :class:`InstanceHeader`. The same header type is
built from in-memory datasets (instances fetched over DICOMweb), whose pixels are then
decoded from the dataset itself.

Reading is defensive: a value that pydicom cannot parse does not raise here; it is recorded
in ``InstanceHeader.problems`` so that selection can say, in words, why a series is unfit.
Most files are read by a byte-level walk (:mod:`engine.dicom.fastheader`) that gives the
same header without ``dcmread``; it leaves anything unusual, and every malformed value, to
the pydicom path.
Patient-identifying attributes are never read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import MediaStorageDirectoryStorage

from engine.dicom import fastheader
from engine.dicom.multiframe import enhanced_frames, is_enhanced
from engine.dicom.values import (
    FrameHeader,
    HeaderProblems,
    read_float,
    read_floats,
    read_int,
    read_text,
)

log = logging.getLogger(__name__)

# The only attributes read during a scan. No patient or operator attribute is listed.
HEADER_KEYWORDS: tuple[str, ...] = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "InstanceNumber",
    "Modality",
    "ImageType",
    "Manufacturer",
    "PatientPosition",
    "ConvolutionKernel",
    "KVP",
    "GantryDetectorTilt",
    "SliceThickness",
    "SpacingBetweenSlices",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "NumberOfFrames",
    "RescaleSlope",
    "RescaleIntercept",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
)
_HEADER_TAGS = [tag_for_keyword(keyword) for keyword in HEADER_KEYWORDS]

_DICM_OFFSET = 128
_DICM_MAGIC = b"DICM"
_DICOMDIR_NAMES = frozenset({"DICOMDIR"})


@dataclass
class InstanceHeader:
    """What selection and assembly need to know about one instance (file or dataset).

    ``source`` is where the pixels are decoded from later: a file path, or the dataset
    itself. ``name`` is how the instance appears in messages: the file's base name (never
    its folder, which may hold identifiers) or ``dataset #k`` for in-memory instances.
    ``problems`` are malformed values the series cannot do without (geometry, pixel format,
    rescale); ``notes`` are malformed optional values (kVp, kernel...), read as missing.
    ``error`` is set when the instance could not be parsed at all; such a header has no
    UIDs and takes no part in selection.
    """

    source: Path | Dataset
    name: str
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    transfer_syntax_uid: str | None = None
    series_number: int | None = None
    instance_number: int | None = None
    modality: str | None = None
    image_type: tuple[str, ...] = ()
    manufacturer: str | None = None
    patient_position: str | None = None
    kernel: str | None = None
    kvp: float | None = None
    gantry_tilt_deg: float | None = None
    spacing_between_slices: float | None = None
    rows: int | None = None
    columns: int | None = None
    samples_per_pixel: int | None = None
    bits_allocated: int | None = None
    pixel_representation: int | None = None
    number_of_frames: int = 1
    bits_stored: int | None = None
    pixel_offset: int | None = None
    """File offset of the native (uncompressed, little-endian) pixel bytes, when known."""
    pixel_length: int | None = None
    """Length of those bytes."""
    padding_value: int | None = None
    padding_range_limit: int | None = None
    enhanced: bool = False
    frames: tuple[FrameHeader, ...] = ()
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    error: str | None = None

    @property
    def is_image(self) -> bool:
        return self.rows is not None and self.columns is not None


def _first_text(values: tuple[str, ...] | None) -> str | None:
    return values[0] if values else None


class _Values(Protocol):
    """How the header fields are read: from a pydicom dataset, or by the fast reader.

    Both readers share :func:`_header_fields` and :func:`_classic_frame`, so a field is
    mapped from its attribute in one place only."""

    def text(self, keyword: str) -> tuple[str, ...] | None: ...

    def integer(self, keyword: str) -> int | None: ...

    def number(self, keyword: str) -> float | None: ...

    def numbers(self, keyword: str, count: int) -> tuple[float, ...] | None: ...


class _DatasetValues:
    """Values of a pydicom dataset through ``engine.dicom.values``, which records each
    malformed value in ``problems`` instead of raising."""

    def __init__(self, ds: Dataset, problems: HeaderProblems) -> None:
        self._ds, self._problems = ds, problems

    def text(self, keyword: str) -> tuple[str, ...] | None:
        return read_text(self._ds, keyword, self._problems)

    def integer(self, keyword: str) -> int | None:
        return read_int(self._ds, keyword, self._problems)

    def number(self, keyword: str) -> float | None:
        return read_float(self._ds, keyword, self._problems)

    def numbers(self, keyword: str, count: int) -> tuple[float, ...] | None:
        return read_floats(self._ds, keyword, count, self._problems)


def header_from_dataset(ds: Dataset, source: Path | Dataset, name: str) -> InstanceHeader:
    """Build an :class:`InstanceHeader` from a parsed dataset (headers at least)."""
    problems = HeaderProblems()
    file_meta = getattr(ds, "file_meta", None)
    transfer_syntax = None
    if file_meta is not None:
        transfer_syntax = _first_text(read_text(file_meta, "TransferSyntaxUID", problems))
    values = _DatasetValues(ds, problems)
    header = _header_fields(values, source, name, transfer_syntax)
    if is_enhanced(ds):
        header.enhanced = True
        frames, extra = enhanced_frames(ds, header.number_of_frames, problems)
        header.frames = frames
        header.kernel = header.kernel or extra.get("kernel")
        header.kvp = header.kvp if header.kvp is not None else extra.get("kvp")
    elif header.is_image:
        if header.number_of_frames > 1:
            problems.add(
                f"{header.number_of_frames} frames without per-frame positions "
                "(a multi-frame image that is not an enhanced CT)"
            )
        header.frames = (_classic_frame(values),)
    header.problems = problems.critical()
    header.notes = problems.minor()
    return header


def _header_fields(
    values: _Values, source: Path | Dataset, name: str, transfer_syntax: str | None
) -> InstanceHeader:
    """The top-level fields of a header (no frames), read in a fixed order so that
    problems are listed in the same order every time."""
    image_type = values.text("ImageType") or ()
    return InstanceHeader(
        source=source,
        name=name,
        study_instance_uid=_first_text(values.text("StudyInstanceUID")),
        series_instance_uid=_first_text(values.text("SeriesInstanceUID")),
        sop_instance_uid=_first_text(values.text("SOPInstanceUID")),
        sop_class_uid=_first_text(values.text("SOPClassUID")),
        transfer_syntax_uid=transfer_syntax,
        series_number=values.integer("SeriesNumber"),
        instance_number=values.integer("InstanceNumber"),
        modality=_first_text(values.text("Modality")),
        image_type=tuple(value.strip().upper() for value in image_type),
        manufacturer=_first_text(values.text("Manufacturer")),
        patient_position=_first_text(values.text("PatientPosition")),
        kernel=_joined(values.text("ConvolutionKernel")),
        kvp=values.number("KVP"),
        gantry_tilt_deg=values.number("GantryDetectorTilt"),
        spacing_between_slices=values.number("SpacingBetweenSlices"),
        rows=values.integer("Rows"),
        columns=values.integer("Columns"),
        samples_per_pixel=values.integer("SamplesPerPixel"),
        bits_allocated=values.integer("BitsAllocated"),
        bits_stored=values.integer("BitsStored"),
        pixel_representation=values.integer("PixelRepresentation"),
        number_of_frames=values.integer("NumberOfFrames") or 1,
        padding_value=values.integer("PixelPaddingValue"),
        padding_range_limit=values.integer("PixelPaddingRangeLimit"),
    )


def _joined(values: tuple[str, ...] | None) -> str | None:
    return "\\".join(values) if values else None


def _classic_frame(values: _Values) -> FrameHeader:
    """The geometry and rescale of a single-frame image (CT Image Storage and the like)."""
    return FrameHeader(
        position=values.numbers("ImagePositionPatient", 3),
        orientation=values.numbers("ImageOrientationPatient", 6),
        pixel_spacing=values.numbers("PixelSpacing", 2),
        thickness=values.number("SliceThickness"),
        slope=values.number("RescaleSlope"),
        intercept=values.number("RescaleIntercept"),
        frame_index=None,
    )


def _looks_like_part10(path: Path) -> bool:
    """True when the file carries the DICOM Part 10 preamble and ``DICM`` marker."""
    try:
        with path.open("rb") as handle:
            handle.seek(_DICM_OFFSET)
            return handle.read(len(_DICM_MAGIC)) == _DICM_MAGIC
    except OSError:
        return False


def read_header(path: Path | str) -> InstanceHeader | None:
    """The header of one file, or None when the file is not a DICOM image instance.

    A file without the Part 10 marker, and a DICOMDIR, return None (skipped). A DICOM file
    that pydicom cannot parse returns a header whose ``error`` says why. The common file is
    read by :func:`read_header_fast`; any other by :func:`read_header_with_pydicom`.
    """
    path = Path(path)
    if path.name.upper() in _DICOMDIR_NAMES:
        return None
    header = read_header_fast(path)
    return header if header is not None else read_header_with_pydicom(path)


def read_header_with_pydicom(path: Path) -> InstanceHeader | None:
    """:func:`read_header` through ``pydicom.dcmread``: any file, and the reference that
    the fast reader is tested against."""
    if not _looks_like_part10(path):
        return None
    try:
        with path.open("rb") as handle:
            ds = pydicom.dcmread(handle, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
            media_class = ds.file_meta.get("MediaStorageSOPClassUID") if ds.file_meta else None
            if media_class == MediaStorageDirectoryStorage:
                return None
            header = header_from_dataset(ds, path, path.name)
            located = native_pixel_location(handle, header.transfer_syntax_uid)
        if located is not None:
            header.pixel_offset, header.pixel_length = located
        return header
    except Exception as exc:  # noqa: BLE001 - any parse failure of foreign bytes is data
        return InstanceHeader(source=path, name=path.name, error=describe_exception(exc))


def read_header_fast(path: Path) -> InstanceHeader | None:
    """The header read by :mod:`engine.dicom.fastheader`, or None when it declines.

    That reader takes the common file (a single-frame image in native little endian, clean
    values) several times faster than ``dcmread`` and gives the same header; everything
    else, including every file whose header would carry a problem, is left to
    :func:`read_header_with_pydicom`. An unexpected error in the fast reader is logged and
    also falls back, so a bug there costs time, never a file."""
    try:
        values = fastheader.scan(path, HEADER_KEYWORDS)
        header = _header_fields(values, path, path.name, values.transfer_syntax_uid)
        header.frames = (_classic_frame(values),) if header.is_image else ()
    except fastheader.Declined:
        return None
    except Exception as exc:  # noqa: BLE001 - a fast-path bug must not lose the file
        log.warning("fast header reader failed on %s (%s)", path.name, describe_exception(exc))
        return None
    header.pixel_offset, header.pixel_length = values.pixel_offset, values.pixel_length
    return header


_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
_EXPLICIT_LE, _IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"


def native_pixel_location(handle, transfer_syntax_uid: str | None) -> tuple[int, int] | None:
    """(offset, length) of native little-endian pixel bytes in a file read up to them.

    ``dcmread(..., stop_before_pixels=True)`` leaves the file at the Pixel Data element; its
    value can then be read later with one ``np.fromfile`` instead of a second full parse.
    None for anything else (compressed, big endian, deflated, odd layouts): those take
    pydicom's path."""
    if transfer_syntax_uid not in (_EXPLICIT_LE, _IMPLICIT_LE):
        return None
    start = handle.tell()
    head = handle.read(12)
    if len(head) < 8 or head[:4] != _PIXEL_DATA_TAG:
        return None
    if transfer_syntax_uid == _EXPLICIT_LE:
        if len(head) < 12 or head[4:6] not in (b"OB", b"OW"):
            return None
        length, offset = int.from_bytes(head[8:12], "little"), start + 12
    else:
        length, offset = int.from_bytes(head[4:8], "little"), start + 8
    if length == 0xFFFFFFFF:  # encapsulated: not native
        return None
    return offset, length


def describe_exception(exc: BaseException) -> str:
    """A short, single-line description of a library error, without folder names.

    Library messages sometimes quote a full path, whose folders may carry identifiers;
    every word that looks like a path is cut to its base name.
    """
    lines = str(exc).strip().splitlines()
    words = lines[0].split(" ") if lines else []
    text = " ".join(word.rsplit("/", 1)[-1] if "/" in word else word for word in words)[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _walk_files(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            yield Path(folder) / name


def scan_folder(path: Path | str) -> list[InstanceHeader]:
    """Headers of every DICOM instance under ``path`` (recursively, any file names).

    Non-DICOM files and DICOMDIRs are skipped; a DICOM file that cannot be parsed is kept
    as a header with ``error`` set, so the caller can report it. ``path`` may also be a
    single file.
    """
    root = Path(path)
    files = [root] if root.is_file() else list(_walk_files(root))
    headers: list[InstanceHeader] = []
    skipped = 0
    for file in files:
        header = read_header(file)
        if header is None:
            skipped += 1
        else:
            headers.append(header)
    log.debug("scanned %d files: %d DICOM instances, %d skipped", len(files), len(headers), skipped)
    return headers


def headers_from_datasets(datasets: Sequence[Dataset]) -> list[InstanceHeader]:
    """Headers of in-memory instances (e.g. fetched over DICOMweb); pixels stay in them."""
    headers: list[InstanceHeader] = []
    for index, ds in enumerate(datasets):
        name = f"dataset #{index}"
        if not isinstance(ds, Dataset):
            headers.append(
                InstanceHeader(
                    source=Dataset(), name=name, error=f"not a DICOM dataset: {type(ds).__name__}"
                )
            )
            continue
        try:
            headers.append(header_from_dataset(ds, ds, name))
        except Exception as exc:  # noqa: BLE001 - foreign data
            headers.append(InstanceHeader(source=ds, name=name, error=describe_exception(exc)))
    return headers


def study_uids(headers: Sequence[InstanceHeader]) -> dict[str, int]:
    """Instance count per StudyInstanceUID (instances without one are not counted)."""
    counts: dict[str, int] = {}
    for header in headers:
        if header.error is None and header.study_instance_uid:
            counts[header.study_instance_uid] = counts.get(header.study_instance_uid, 0) + 1
    return counts


__all__ = [
    "HEADER_KEYWORDS",
    "InstanceHeader",
    "describe_exception",
    "header_from_dataset",
    "headers_from_datasets",
    "read_header",
    "scan_folder",
    "study_uids",
]
