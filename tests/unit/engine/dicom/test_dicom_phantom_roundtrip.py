"""Phantom -> DICOM files -> loader: geometry, transfer syntaxes and series selection together.

The phantom writes the contract layout; the loader must find the screening series among
the extras, skip each extra with its reason, and recover the geometry so that every truth
centroid lands in its own vertebral body and maps back within one voxel.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.dicom import load_study
from engine.phantom import PhantomConfig, generate_study, write_study
from engine.settings import SelectionSettings
from engine.volume import index_to_lps, lps_to_index

CONFIG = PhantomConfig.fast(scout_probability=1.0, thick_series_probability=1.0, sagittal_series_probability=1.0)


@pytest.fixture(scope="module", params=["HFS", "FFS"])
def written(request, tmp_path_factory):
    study = generate_study(4242 if request.param == "HFS" else 4343, CONFIG.model_copy(update={"position": request.param}))
    folder = write_study(study, tmp_path_factory.mktemp(request.param))
    return study, folder


def test_truth_centroids_map_to_their_bodies_and_back(written):
    study, folder = written
    loaded = load_study(folder, SelectionSettings())
    volume = loaded.volume
    assert volume.series_instance_uid == study.volume.series_instance_uid
    assert volume.hu.shape == study.volume.hu.shape
    # The loader may stack slices in the other order: compare through LPS, not indices.
    for vertebra in study.truth["vertebrae"]:
        lps = np.asarray(vertebra["centroid_lps_mm"])
        index = lps_to_index(volume.affine, lps)
        source_index = np.rint(lps_to_index(study.volume.affine, np.asarray(index_to_lps(volume.affine, np.rint(index))))).astype(int)
        assert study.labels[tuple(source_index)] == vertebra["label_value"], vertebra["level"]
        back = index_to_lps(volume.affine, index)
        assert np.linalg.norm(back - lps) < 1e-6
        voxel = np.abs(np.rint(index) - index) * volume.spacing
        assert np.all(voxel <= volume.spacing / 2 + 1e-6)


def test_hu_identical_to_the_rendered_volume(written):
    study, folder = written
    volume = load_study(folder, SelectionSettings()).volume
    # same voxels, possibly in reversed slice order: map the loaded grid onto the source grid
    to_source = np.linalg.inv(study.volume.affine) @ volume.affine
    flip = to_source[0, 0] < 0
    hu = volume.hu[::-1] if flip else volume.hu
    np.testing.assert_array_equal(hu, study.volume.hu)


def test_every_extra_series_is_skipped_with_its_reason(written):
    study, folder = written
    decisions = {d.series_instance_uid: d for d in load_study(folder, SelectionSettings()).decisions}
    extras = [s for s in study.truth["series"] if s.get("role") != "screening"]
    assert len(extras) == 3
    for extra in extras:
        decision = decisions[extra["series_instance_uid"]]
        assert not decision.eligible and decision.reasons, extra


@pytest.mark.parametrize("syntax", ["rle", "jpegls", "jpeg2000"])
def test_each_transfer_syntax_loads_to_identical_hu(tmp_path, syntax):
    study = generate_study(77, PhantomConfig.fast(matrix=64, slices_min=40, slices_max=60,
                                                  scout_probability=0, thick_series_probability=0,
                                                  sagittal_series_probability=0))
    reference = load_study(write_study(study, tmp_path / "explicit"), SelectionSettings(min_slices=10, min_coverage_mm=50)).volume
    other = load_study(write_study(study, tmp_path / syntax, transfer_syntax=syntax),
                       SelectionSettings(min_slices=10, min_coverage_mm=50)).volume
    np.testing.assert_array_equal(other.hu, reference.hu)
    np.testing.assert_allclose(other.affine, reference.affine)
