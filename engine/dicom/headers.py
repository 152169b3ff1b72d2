"""Reading DICOM headers cheaply, before any pixel is decoded.

Choosing a series needs only a few attributes of each instance, so a folder is scanned with
``stop_before_pixels`` and a short list of tags; the pixels are decoded later, only for the
chosen series, from the path kept in each :class:`InstanceHeader`. The same header type is
built from in-memory datasets (instances fetched over DICOMweb), whose pixels are then
decoded from the dataset itself.

Reading is defensive: a value that pydicom cannot parse does not raise here; it is recorded
in ``InstanceHeader.problems`` so that selection can say, in words, why a series is unfit.
Patient-identifying attributes are never read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import MediaStorageDirectoryStorage

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


def header_from_dataset(ds: Dataset, source: Path | Dataset, name: str) -> InstanceHeader:
    """Build an :class:`InstanceHeader` from a parsed dataset (headers at least)."""
    problems = HeaderProblems()
    file_meta = getattr(ds, "file_meta", None)
    transfer_syntax = None
    if file_meta is not None:
        transfer_syntax = _first_text(read_text(file_meta, "TransferSyntaxUID", problems))
    image_type = read_text(ds, "ImageType", problems) or ()
    header = InstanceHeader(
        source=source,
        name=name,
        study_instance_uid=_first_text(read_text(ds, "StudyInstanceUID", problems)),
        series_instance_uid=_first_text(read_text(ds, "SeriesInstanceUID", problems)),
        sop_instance_uid=_first_text(read_text(ds, "SOPInstanceUID", problems)),
        sop_class_uid=_first_text(read_text(ds, "SOPClassUID", problems)),
        transfer_syntax_uid=transfer_syntax,
        series_number=read_int(ds, "SeriesNumber", problems),
        instance_number=read_int(ds, "InstanceNumber", problems),
        modality=_first_text(read_text(ds, "Modality", problems)),
        image_type=tuple(value.strip().upper() for value in image_type),
        manufacturer=_first_text(read_text(ds, "Manufacturer", problems)),
        patient_position=_first_text(read_text(ds, "PatientPosition", problems)),
        kernel=_joined(read_text(ds, "ConvolutionKernel", problems)),
        kvp=read_float(ds, "KVP", problems),
        gantry_tilt_deg=read_float(ds, "GantryDetectorTilt", problems),
        spacing_between_slices=read_float(ds, "SpacingBetweenSlices", problems),
        rows=read_int(ds, "Rows", problems),
        columns=read_int(ds, "Columns", problems),
        samples_per_pixel=read_int(ds, "SamplesPerPixel", problems),
        bits_allocated=read_int(ds, "BitsAllocated", problems),
        bits_stored=read_int(ds, "BitsStored", problems),
        pixel_representation=read_int(ds, "PixelRepresentation", problems),
        number_of_frames=read_int(ds, "NumberOfFrames", problems) or 1,
        padding_value=read_int(ds, "PixelPaddingValue", problems),
        padding_range_limit=read_int(ds, "PixelPaddingRangeLimit", problems),
    )
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
        header.frames = (_classic_frame(ds, problems),)
    header.problems = problems.critical()
    header.notes = problems.minor()
    return header


def _joined(values: tuple[str, ...] | None) -> str | None:
    return "\\".join(values) if values else None


def _classic_frame(ds: Dataset, problems: HeaderProblems) -> FrameHeader:
    """The geometry and rescale of a single-frame image (CT Image Storage and the like)."""
    return FrameHeader(
        position=read_floats(ds, "ImagePositionPatient", 3, problems),
        orientation=read_floats(ds, "ImageOrientationPatient", 6, problems),
        pixel_spacing=read_floats(ds, "PixelSpacing", 2, problems),
        thickness=read_float(ds, "SliceThickness", problems),
        slope=read_float(ds, "RescaleSlope", problems),
        intercept=read_float(ds, "RescaleIntercept", problems),
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
    that pydicom cannot parse returns a header whose ``error`` says why.
    """
    path = Path(path)
    if path.name.upper() in _DICOMDIR_NAMES or not _looks_like_part10(path):
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
