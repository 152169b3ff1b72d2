"""Pixel decoding and conversion to Hounsfield units, one slice at a time.

Decoding goes through pydicom's pixel API with whatever plugins are installed (pylibjpeg
with openjpeg/libjpeg/rle, pyjpegls). Each decoded slice is rescaled straight into its
place in one preallocated int16 volume, so memory stays near one int16 copy of the series
plus a few slices in flight: no float64 (or float32) copy of the whole study is ever made.

Failures are typed: no decoder for the transfer syntax -> :class:`UnsupportedStudyError`
naming it; bytes that do not decode, or decode to the wrong size ->
:class:`CorruptStudyError` naming the file (base name only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder, iter_pixels, pixel_array
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
)

from engine.dicom.headers import InstanceHeader, describe_exception
from engine.errors import CorruptStudyError, UnsupportedStudyError

AIR_HU = -1024
"""Value given to padding pixels (outside the reconstructed field of view)."""
INT16_MIN, INT16_MAX = -32768, 32767


def transfer_syntax_name(uid: str | None) -> str:
    """A transfer syntax for messages: its name and UID (public constants, never PHI)."""
    if not uid:
        return "an unstated transfer syntax"
    name = UID(uid).name
    return f"{name} ({uid})" if name != uid else f"transfer syntax {uid}"


def effective_transfer_syntax(header: InstanceHeader) -> str | None:
    """The transfer syntax to decode with; for datasets without file meta, inferred.

    Datasets built in memory may lack ``file_meta``; when their pixel data is native (not
    encapsulated), the byte order they were read with decides it.
    """
    if header.transfer_syntax_uid:
        return header.transfer_syntax_uid
    ds = header.source
    if not isinstance(ds, Dataset):
        return None  # a file without a transfer syntax in its meta: pydicom will say why
    if "PixelData" in ds and getattr(ds["PixelData"], "is_undefined_length", False):
        return None  # encapsulated (compressed) pixels: the codec cannot be guessed
    little = getattr(ds, "original_encoding", (None, True))[1]
    return ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian


def unsupported_reason(header: InstanceHeader) -> str | None:
    """Why this installation cannot decode the instance's pixels, or None if it can."""
    uid = effective_transfer_syntax(header)
    if uid is None:
        return "no transfer syntax is stated, so the pixel data cannot be interpreted"
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"the images use {transfer_syntax_name(uid)}, which pydicom cannot decode"
    except Exception as exc:  # noqa: BLE001 - a malformed UID string
        return f"the transfer syntax {uid!r} is not valid ({describe_exception(exc)})"
    if not decoder.is_available:
        return (
            f"the images use {transfer_syntax_name(uid)}, and no decoder for it is installed "
            f"(pydicom needs one of: {', '.join(sorted(decoder.missing_dependencies)) or 'a plugin'})"
        )
    return None


def check_decodable(header: InstanceHeader) -> None:
    """Raise :class:`UnsupportedStudyError` when the instance's pixels cannot be decoded here."""
    reason = unsupported_reason(header)
    if reason:
        raise UnsupportedStudyError(f"{header.name}: {reason}")


def _decode_error(
    header: InstanceHeader, frame_index: int | None, exc: BaseException
) -> CorruptStudyError:
    where = header.name if frame_index is None else f"{header.name} frame {frame_index + 1}"
    return CorruptStudyError(
        f"{where}: the pixel data cannot be decoded ({describe_exception(exc)})"
    )


def _dataset_frames(
    header: InstanceHeader, ds: Dataset, indices: list[int] | None
) -> Iterator[np.ndarray]:
    uid = effective_transfer_syntax(header)
    decoder = get_decoder(uid)  # checked by check_decodable
    options = as_pixel_options(ds)
    if indices is not None and len(indices) == 1:
        yield decoder.as_array(ds, index=indices[0], validate=True, **options)[0]
        return
    for array, _ in decoder.iter_array(ds, indices=indices, validate=True, **options):
        yield array


def native_frame(header: InstanceHeader) -> np.ndarray | None:
    """The one 16-bit grey frame of a native little-endian file, read straight from its
    bytes (located by the header scan), or None when this fast path does not apply.

    Gives the same values as pydicom's decoder: stored values as they are, sign-extended
    from BitsStored for signed pixels. Short pixel data falls back to pydicom, which says
    what is wrong."""
    if (
        header.pixel_offset is None
        or not isinstance(header.source, Path)
        or header.number_of_frames != 1
        or header.samples_per_pixel not in (None, 1)
        or header.bits_allocated != 16
        or header.rows is None
        or header.columns is None
    ):
        return None
    count = header.rows * header.columns
    if header.pixel_length is None or header.pixel_length < 2 * count:
        return None
    signed = header.pixel_representation == 1
    array = np.fromfile(header.source, dtype="<i2" if signed else "<u2", count=count, offset=header.pixel_offset)
    if array.size != count:
        return None
    stored = header.bits_stored or 16
    if signed and stored < 16:
        shift = 16 - stored
        array = (array << shift) >> shift
    return array.reshape(header.rows, header.columns)


def _frames_of(header: InstanceHeader, indices: list[int] | None) -> Iterator[np.ndarray]:
    """The raw frame iterator of pydicom for this instance's source."""
    if indices is None or indices == [0]:
        fast = native_frame(header)
        if fast is not None:
            return iter([fast])
    source = header.source
    if isinstance(source, Dataset):
        return _dataset_frames(header, source, indices)
    if header.transfer_syntax_uid == DeflatedExplicitVRLittleEndian:
        # pixel_array(path) reads the file's bytes as stored, which deflation defeats.
        return _dataset_frames(header, pydicom.dcmread(source), indices)
    if indices is None and header.number_of_frames == 1:
        return iter([pixel_array(source)])
    if indices is not None and len(indices) == 1:
        return iter([pixel_array(source, index=indices[0])])
    return iter_pixels(source, indices=indices)


def decode_frames(header: InstanceHeader, indices: list[int] | None) -> Iterator[np.ndarray]:
    """Yield the 2-D stored-value arrays of the given frames (all frames when None).

    A single-frame file is read with one ``pixel_array`` call; a multi-frame file is read
    once and its frames yielded one by one in file order (re-opening it per frame would
    re-parse its functional groups every time), so ``indices`` should be ascending.
    """
    check_decodable(header)
    expected = (header.rows, header.columns)
    current: int | None = indices[0] if indices else None
    try:
        for position, array in enumerate(_frames_of(header, indices)):
            current = indices[position] if indices is not None else position
            if array.ndim == 3 and array.shape[0] == 1:
                array = array[0]
            if array.shape != expected:
                raise CorruptStudyError(
                    f"{header.name}: decoded image is {'x'.join(map(str, array.shape))}, "
                    f"but the header says {expected[0]}x{expected[1]}"
                )
            yield array
    except (CorruptStudyError, UnsupportedStudyError, MemoryError):
        raise
    except Exception as exc:
        raise _decode_error(header, current if header.number_of_frames > 1 else None, exc) from exc


def padding_range(header: InstanceHeader) -> tuple[int, int] | None:
    """Stored values that mean "no data" (PixelPaddingValue [.. PixelPaddingRangeLimit])."""
    if header.padding_value is None:
        return None
    limit = (
        header.padding_range_limit
        if header.padding_range_limit is not None
        else header.padding_value
    )
    return min(header.padding_value, limit), max(header.padding_value, limit)


def rescale_into(
    stored: np.ndarray,
    slope: float | None,
    intercept: float | None,
    padding: tuple[int, int] | None,
    out: np.ndarray,
) -> None:
    """Write ``stored * slope + intercept`` into the int16 slice ``out``, rounded and clipped.

    Integer arithmetic (int32) when the slope is 1 and the intercept whole, float32 for
    one slice otherwise. Padding pixels become :data:`AIR_HU`.
    """
    slope = 1.0 if slope is None else float(slope)
    intercept = 0.0 if intercept is None else float(intercept)
    if (
        slope == 1.0
        and intercept.is_integer()
        and stored.dtype.kind in "iu"
        and stored.dtype.itemsize <= 2
    ):
        work = stored.astype(np.int32)
        work += int(intercept)
    else:
        work = stored.astype(np.float32)
        work *= np.float32(slope)
        work += np.float32(intercept)
        np.rint(work, out=work)
    np.clip(work, INT16_MIN, INT16_MAX, out=work)
    out[...] = work
    if padding is not None:
        low, high = padding
        out[(stored >= low) & (stored <= high)] = AIR_HU


Task = tuple[InstanceHeader, list[int | None], list[int]]
"""(instance, its frame indices to decode, the output slice of each)."""


def _run_task(
    task: Task, volume: np.ndarray, rescale_of: Callable[[InstanceHeader, int | None], tuple]
) -> None:
    header, frame_indices, slices = task
    padding = padding_range(header)
    indices = None if frame_indices == [None] else [int(i) for i in frame_indices]  # type: ignore[arg-type]
    done = 0
    for array in decode_frames(header, indices):
        if done == len(slices):
            break
        slope, intercept = rescale_of(header, frame_indices[done])
        rescale_into(array, slope, intercept, padding, volume[slices[done]])
        done += 1
    if done < len(slices):
        raise CorruptStudyError(
            f"{header.name}: {done} frame(s) decoded where {len(slices)} were expected "
            "(the pixel data is truncated)"
        )


def decode_into(
    tasks: list[Task],
    volume: np.ndarray,
    rescale_of: Callable[[InstanceHeader, int | None], tuple[float | None, float | None]],
    threads: int,
) -> None:
    """Decode every task into its slices of ``volume``; several instances at once.

    pydicom's file reading and the JPEG plugins release the GIL for part of their work, so
    a small pool overlaps them. Measured here (2 shared cores, 400 explicit-VR 512x512
    slices from the page cache): 0.94-0.99 s with one thread, 0.44-0.67 s with two; a third
    thread gave nothing more. The first error cancels the remaining work and is raised.
    """
    if threads <= 1 or len(tasks) <= 1:
        for task in tasks:
            _run_task(task, volume, rescale_of)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dicom-decode") as pool:
        futures = [pool.submit(_run_task, task, volume, rescale_of) for task in tasks]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
