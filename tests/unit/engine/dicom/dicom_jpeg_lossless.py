"""A minimal JPEG Lossless (process 14, selection value 1) encoder for test data.

pydicom has no encoder for JPEG Lossless, yet archives send CT in it more than in any other
compressed syntax, so the tests build their own: prediction from the left neighbour
(above for the first column, 2^(P-1) for the first pixel), differences modulo 2^16, one
Huffman table giving every category 0..16 a 5-bit code. Not efficient, but a valid stream
that libjpeg (pylibjpeg-libjpeg) decodes.
"""

from __future__ import annotations

import struct

import numpy as np
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLosslessSV1

_CODE_BITS = 5
_CATEGORIES = 17  # difference categories 0..16


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", marker, len(payload) + 2) + payload


def _entropy_coded(image: np.ndarray, precision: int) -> bytes:
    values = image.astype(np.int64)
    prediction = np.empty_like(values)
    prediction[:, 1:] = values[:, :-1]
    prediction[1:, 0] = values[:-1, 0]
    prediction[0, 0] = 1 << (precision - 1)
    differences = (values - prediction) % 65536
    differences = np.where(differences >= 32768, differences - 65536, differences).ravel()
    bits: list[str] = []
    for difference in differences.tolist():
        if difference == -32768:
            bits.append(format(16, f"0{_CODE_BITS}b"))
            continue
        category = abs(difference).bit_length()
        bits.append(format(category, f"0{_CODE_BITS}b"))
        if category:
            extra = difference if difference > 0 else difference + (1 << category) - 1
            bits.append(format(extra, f"0{category}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    data = int(stream, 2).to_bytes(len(stream) // 8, "big") if stream else b""
    return data.replace(b"\xff", b"\xff\x00")


def encode_frame(image: np.ndarray, precision: int = 16) -> bytes:
    """One 2-D unsigned image as a JPEG Lossless SV1 codestream."""
    rows, columns = image.shape
    counts = [0] * 16
    counts[_CODE_BITS - 1] = _CATEGORIES
    frame_header = struct.pack(">BHHB", precision, rows, columns, 1) + bytes([1, 0x11, 0])
    huffman = bytes([0x00]) + bytes(counts) + bytes(range(_CATEGORIES))
    scan_header = bytes([1, 1, 0x00, 1, 0, 0])  # one component, table 0, predictor 1, Se 0, Ah/Al 0
    return (
        b"\xff\xd8"
        + _segment(0xFFC3, frame_header)
        + _segment(0xFFC4, huffman)
        + _segment(0xFFDA, scan_header)
        + _entropy_coded(image, precision)
        + b"\xff\xd9"
    )


def compress_jpeg_lossless(ds) -> None:
    """Replace the dataset's native unsigned 16-bit pixels by JPEG Lossless SV1 frames."""
    if ds.PixelRepresentation != 0 or ds.BitsAllocated != 16:
        raise ValueError("this test encoder handles unsigned 16-bit images only")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    array = np.frombuffer(ds.PixelData, dtype="<u2").reshape(frames, ds.Rows, ds.Columns)
    ds.PixelData = encapsulate([encode_frame(frame) for frame in array])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
