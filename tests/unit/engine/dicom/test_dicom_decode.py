"""Decoding: every transfer syntax gives the same HU; rescale, padding, and typed failures."""

from __future__ import annotations

import copy
import tracemalloc

import numpy as np
import pytest
from dicom_jpeg_lossless import compress_jpeg_lossless
from dicom_series_factory import assert_field_matches, make_series, write_series
from pydicom.data import get_testdata_file
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from engine.dicom import decode as decode_module
from engine.dicom import load_study
from engine.dicom.decode import AIR_HU, decode_frames, rescale_into
from engine.dicom.headers import read_header
from engine.errors import CorruptStudyError, UnsupportedStudyError


def _recode_native(uid):
    def recode(ds) -> None:
        ds.file_meta.TransferSyntaxUID = uid

    return recode


def _compress(uid):
    def compress(ds) -> None:
        ds.compress(uid)

    return compress


ENCODINGS = {
    "implicit-vr": _recode_native(ImplicitVRLittleEndian),
    "deflated": _recode_native(DeflatedExplicitVRLittleEndian),
    "rle": _compress(RLELossless),
    "jpeg-ls-lossless": _compress(JPEGLSLossless),
    "jpeg2000-lossless": _compress(JPEG2000Lossless),
    "jpeg-lossless-sv1": compress_jpeg_lossless,  # pydicom has no encoder: our own, see helper
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_each_transfer_syntax_decodes_to_identical_hu(encoding: str, tmp_path, settings) -> None:
    reference = make_series(n_slices=12)
    loose = settings.model_copy(update={"min_slices": 5, "min_coverage_mm": 20.0})
    expected = load_study(reference, loose).volume.hu
    encoded = [copy.deepcopy(ds) for ds in reference]
    for ds in encoded:
        ENCODINGS[encoding](ds)
    write_series(encoded, tmp_path)
    volume = load_study(tmp_path, loose).volume
    assert volume.meta["transfer_syntax_uid"] == encoded[0].file_meta.TransferSyntaxUID
    np.testing.assert_array_equal(volume.hu, expected)


@pytest.mark.parametrize(
    "variant",
    [
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
    ],
)
def test_pydicom_reference_files_decode_like_the_native_one(variant: str) -> None:
    """Files encoded by other toolkits (pydicom ships them) give the native file's pixels."""
    native = next(decode_frames(read_header(get_testdata_file("MR_small.dcm", read=False)), None))
    other = next(decode_frames(read_header(get_testdata_file(variant, read=False)), None))
    np.testing.assert_array_equal(other, native)


def test_rescale_differs_per_slice(settings) -> None:
    """Slope 0.5 on odd slices, intercept varying: each slice uses its own."""
    datasets = make_series(pixel_representation=1, intercept=0.0)
    for k, ds in enumerate(datasets):
        if k % 2:
            hu = np.frombuffer(ds.PixelData, dtype=np.int16).astype(float)
            ds.RescaleSlope, ds.RescaleIntercept = 0.5, -100.0 - k
            ds.PixelData = np.rint((hu - (-100.0 - k)) / 0.5).astype(np.int16).tobytes()
    volume = load_study(datasets, settings).volume
    assert_field_matches(volume)


def test_padding_becomes_air_and_values_are_clipped() -> None:
    stored = np.array([[0, 5, 40000, 65535]], dtype=np.uint16)
    out = np.empty((1, 4), dtype=np.int16)
    rescale_into(stored, 1.0, -1024.0, (0, 0), out)
    assert out.tolist() == [[AIR_HU, -1019, 32767, 32767]]
    rescale_into(stored, 2.0, -1024.5, None, out)
    assert out.tolist() == [[-1024, -1014, 32767, 32767]]
    signed = np.array([[-2000, -1, 100]], dtype=np.int16)
    out3 = np.empty((1, 3), dtype=np.int16)
    rescale_into(signed, 1.0, 0.0, (-2000, -1500), out3)
    assert out3.tolist() == [[AIR_HU, -1, 100]]


def test_padding_value_in_a_series(settings) -> None:
    datasets = make_series(padding_value=0)
    for ds in datasets[:3]:
        pixels = np.frombuffer(ds.PixelData, dtype=np.uint16).copy()
        pixels[:64] = 0  # the first row is outside the field of view
        ds.PixelData = pixels.tobytes()
    volume = load_study(datasets, settings).volume
    assert (volume.hu[:3, 0, :] == AIR_HU).all()
    assert (volume.hu[3:, 0, :] != AIR_HU).any()


def test_memory_stays_near_one_int16_volume(settings) -> None:
    """No float64 (or float32) copy of the whole study: peak allocation ~ one int16 volume."""
    datasets = make_series(
        n_slices=40, rows=128, columns=128, pixel_spacing=(0.4, 0.4), slope=0.5, intercept=-1024.0
    )
    volume_bytes = 40 * 128 * 128 * 2
    # Warm up first, so one-time imports and decoder set-up are not counted.
    load_study(make_series(n_slices=12), settings.model_copy(update={"min_coverage_mm": 20.0}))
    tracemalloc.start()
    try:
        volume = load_study(datasets, settings).volume
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert volume.hu.nbytes == volume_bytes
    # A float32 copy would double it, a float64 copy quadruple it; allow slices in flight.
    assert peak < 1.5 * volume_bytes, f"peak {peak} bytes for a {volume_bytes}-byte volume"


def test_truncated_pixel_data_names_the_file(tmp_path, settings) -> None:
    paths = write_series(make_series(), tmp_path, nested=False)
    paths[5].write_bytes(paths[5].read_bytes()[:-1000])
    with pytest.raises(
        CorruptStudyError, match=rf"{paths[5].name}: the pixel data cannot be decoded"
    ) as caught:
        load_study(tmp_path, settings)
    assert str(tmp_path) not in str(caught.value)


def test_broken_compressed_bytes_are_corrupt(tmp_path, settings) -> None:
    datasets = make_series()
    for ds in datasets:
        ds.compress(RLELossless)
    datasets[8].PixelData = datasets[8].PixelData[:40] + b"\x00" * 20
    paths = write_series(datasets, tmp_path, nested=False)
    with pytest.raises(CorruptStudyError, match="the pixel data cannot be decoded"):
        load_study(tmp_path, settings)
    assert len(paths) == 40


def test_missing_pixel_data_is_corrupt(settings) -> None:
    datasets = make_series()
    del datasets[3].PixelData
    with pytest.raises(
        CorruptStudyError, match=r"dataset #3: the pixel data cannot be decoded \(AttributeError"
    ):
        load_study(datasets, settings)


def test_unknown_transfer_syntax_is_unsupported_and_named(settings) -> None:
    datasets = make_series()
    for ds in datasets:
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
    with pytest.raises(
        UnsupportedStudyError,
        match=r"MPEG2 .*\(1\.2\.840\.10008\.1\.2\.4\.100\), which pydicom cannot decode",
    ):
        load_study(datasets, settings)


def test_missing_decoder_plugin_is_unsupported(monkeypatch, settings) -> None:
    class Unavailable:
        is_available = False
        missing_dependencies = ("pylibjpeg-openjpeg",)

    monkeypatch.setattr(decode_module, "get_decoder", lambda uid: Unavailable())
    with pytest.raises(
        UnsupportedStudyError, match="no decoder for it is installed .*pylibjpeg-openjpeg"
    ):
        load_study(make_series(), settings)


def test_dataset_without_file_meta_decodes(settings) -> None:
    """Datasets built in memory may carry no transfer syntax: native pixels still decode."""
    datasets = make_series()
    for ds in datasets:
        del ds.file_meta
    assert_field_matches(load_study(datasets, settings).volume)


def test_only_unreadable_files_is_corrupt(tmp_path, settings) -> None:
    (tmp_path / "a.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00ZZ\x04\x00abcd")
    with pytest.raises(CorruptStudyError, match=r"none of the 1 DICOM files can be read: a\.dcm"):
        load_study(tmp_path, settings)


def test_threads_give_the_same_volume(settings) -> None:
    datasets = make_series()
    one = load_study(datasets, settings.model_copy(update={"decode_threads": 1})).volume.hu
    two = load_study(datasets, settings.model_copy(update={"decode_threads": 3})).volume.hu
    np.testing.assert_array_equal(one, two)
