"""pydicom's own odd and malformed test files: each loads or raises a typed StudyError.

The files are those shipped inside the installed pydicom package (no download). Each is
fed three ways: as a path with the default rules, as a path with rules loose enough to
reach stack checks and decoding, and (when pydicom can read it) as an in-memory dataset.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files

from engine.dicom import LoadedStudy, load_study
from engine.dicom.decode import decode_frames
from engine.dicom.headers import read_header
from engine.errors import StudyError
from engine.settings import SelectionSettings

_ROOT = Path(pydicom.data.__file__).parent
_FILES = sorted(Path(f) for f in get_testdata_files())
_IDS = [str(p.relative_to(_ROOT)) for p in _FILES]

LOOSE = SelectionSettings(
    max_slice_thickness_mm=100.0,
    min_coverage_mm=0.001,
    min_slices=1,
    require_original=False,
    max_obliquity_deg=89.0,
)


def _readable_datasets() -> list[tuple[str, Path]]:
    readable = []
    for path, ident in zip(_FILES, _IDS, strict=True):
        if not path.is_file():
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pydicom.dcmread(path)
        except Exception:  # noqa: BLE001,S112 - files pydicom itself refuses are tested by path only
            continue
        readable.append((ident, path))
    return readable


_DATASETS = _readable_datasets()


def _loads_or_study_error(source, settings: SelectionSettings) -> None:
    try:
        result = load_study(source, settings)
    except StudyError as error:
        assert error.message, "a StudyError must say why"
        assert str(_ROOT) not in error.message, "messages carry base names only"
        return
    assert isinstance(result, LoadedStudy)
    assert result.volume.hu.dtype.name == "int16"


def test_the_installed_files_are_found() -> None:
    """Guard against an empty parametrisation: pydicom ships well over a hundred files."""
    assert len(_FILES) > 100
    assert len(_DATASETS) > 50
    assert len(_IMAGES) > 40


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("path", _FILES, ids=_IDS)
def test_default_rules(path: Path) -> None:
    _loads_or_study_error(path, SelectionSettings())


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("path", _FILES, ids=_IDS)
def test_loose_rules(path: Path) -> None:
    _loads_or_study_error(path, LOOSE)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("path", [p for _, p in _DATASETS], ids=[i for i, _ in _DATASETS])
def test_as_in_memory_dataset(path: Path) -> None:
    _loads_or_study_error([pydicom.dcmread(path)], LOOSE)


def _image_files() -> list[tuple[str, Path]]:
    images = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path, ident in zip(_FILES, _IDS, strict=True):
            header = read_header(path) if path.is_file() else None
            if header is not None and header.error is None and header.is_image:
                images.append((ident, path))
    return images


_IMAGES = _image_files()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("path", [p for _, p in _IMAGES], ids=[i for i, _ in _IMAGES])
def test_decoding_each_image(path: Path) -> None:
    """Below selection: decoding every frame of any image file yields arrays or a StudyError."""
    header = read_header(path)
    try:
        for array in decode_frames(header, None):
            assert array.shape == (header.rows, header.columns)
    except StudyError as error:
        assert header.name in error.message
