"""A seed always gives the same study: same pixels, labels, truth and UIDs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from phantom_configs import tiny_config

from engine.phantom import generate_study, write_study


def test_same_seed_same_study_and_other_seed_another() -> None:
    config = tiny_config()
    first, again, other = generate_study(61, config), generate_study(61, config), generate_study(62, config)
    assert np.array_equal(first.volume.hu, again.volume.hu)
    assert np.array_equal(first.labels, again.labels)
    assert first.truth == again.truth
    assert other.study_instance_uid != first.study_instance_uid
    assert other.volume.shape != first.volume.shape or not np.array_equal(other.volume.hu, first.volume.hu)


def test_written_files_are_identical_for_a_seed(tmp_path: Path) -> None:
    config = tiny_config(fov_levels=("L1", "L3"), scout_probability=1.0)
    folders = [write_study(generate_study(63, config), tmp_path / name) for name in ("a", "b")]
    names = sorted(p.name for p in folders[0].glob("*.dcm"))
    assert names == sorted(p.name for p in folders[1].glob("*.dcm"))
    assert folders[0].name == folders[1].name
    for name in names:
        one, two = (pydicom.dcmread(folder / name) for folder in folders)
        assert one.SOPInstanceUID == two.SOPInstanceUID and one.SeriesInstanceUID == two.SeriesInstanceUID
        assert one.PixelData == two.PixelData
    assert (folders[0] / "truth.json").read_bytes() == (folders[1] / "truth.json").read_bytes()
