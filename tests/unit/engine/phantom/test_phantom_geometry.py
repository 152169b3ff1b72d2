"""Geometry of phantom volumes: affine conventions, labels and truth centroids."""

from __future__ import annotations

import numpy as np
import pytest
from phantom_configs import tiny_config

from engine.phantom import generate_study
from engine.phantom.render import PARTIAL_LABEL
from engine.volume import lps_to_index


@pytest.fixture(scope="module", params=["HFS", "FFS"])
def tiny(request):
    return generate_study(41 if request.param == "HFS" else 42,
                          tiny_config(position=request.param, partial_coverage_probability=0.0))


def _check_centroids(study) -> None:
    labels, affine = study.volume.hu, study.volume.affine
    labels = study.labels
    for entry in study.truth["vertebrae"]:
        index = lps_to_index(affine, np.array(entry["centroid_lps_mm"]))
        voxel = tuple(np.round(index).astype(int))
        assert labels[voxel] == entry["label_value"], f"{entry['level']} centroid falls outside its body"
        mean_index = np.argwhere(labels == entry["label_value"]).mean(axis=0)
        assert np.all(np.abs(mean_index - index) < 1.0), entry["level"]


def test_affine_follows_patient_position(tiny) -> None:
    affine, position = tiny.volume.affine, tiny.truth["acquisition"]["patient_position"]
    slice_step, column_step = affine[:3, 0], affine[:3, 2]
    assert np.allclose(affine[:3, 1] / np.linalg.norm(affine[:3, 1]), [0, 1, 0])  # rows run posterior
    if position == "HFS":  # head first: slices from head to feet, columns to the patient's left
        assert slice_step[2] < 0 and column_step[0] > 0
    else:  # feet first supine: slices from feet to head, columns to the patient's right
        assert slice_step[2] > 0 and column_step[0] < 0
    centroids = np.array([e["centroid_lps_mm"] for e in tiny.truth["vertebrae"]])
    assert np.all(np.diff(centroids[:, 2]) < 0), "truth lists vertebrae from head to feet"


def test_centroids_are_inside_their_body_and_map_through_the_affine(tiny, fracture_studies) -> None:
    _check_centroids(tiny)
    for study in fracture_studies.values():
        _check_centroids(study)


def test_labels_cover_bodies_only(tiny) -> None:
    labels = tiny.labels
    values = set(np.unique(labels).tolist())
    expected = {0} | {e["label_value"] for e in tiny.truth["vertebrae"]}
    if tiny.truth["excluded_vertebrae"]:
        expected.add(PARTIAL_LABEL)
    assert values == expected
    affine = tiny.volume.affine
    for entry in tiny.truth["vertebrae"]:
        points = np.argwhere(labels == entry["label_value"]) @ affine[:3, :3].T + affine[:3, 3]
        rel = points - np.array(entry["centroid_lps_mm"])
        behind = rel @ np.array(entry["axis_posterior_lps"])
        # a body is at most ~35 mm deep; pedicles and spinous processes reach 30-80 mm back
        assert behind.max() < 26.0, f"{entry['level']} label reaches {behind.max():.0f} mm behind its centroid"
        along = np.abs(rel @ np.array(entry["axis_superior_lps"]))
        assert along.max() < entry["heights_mm"]["expected"]


def test_partly_visible_bodies_are_excluded_and_marked(fracture_studies) -> None:
    study = fracture_studies["HFS"]
    excluded = {e["level"] for e in study.truth["excluded_vertebrae"]}
    assert excluded == {"T11", "L3"}
    partial = np.argwhere(study.labels == PARTIAL_LABEL)
    assert len(partial) > 0
    last = study.labels.shape[0] - 1
    assert {0, last} <= set(partial[:, 0].tolist()), "partial bodies are cut by the first and last slices"
    assert [e["level"] for e in study.truth["vertebrae"]] == ["T12", "L1", "L2"]


def test_trunk_in_hounsfield_units(tiny) -> None:
    hu = tiny.volume.hu
    assert hu.dtype == np.int16
    assert hu.min() >= -1024 and hu.max() <= 3071
    center = hu[hu.shape[0] // 2]
    assert (center < -900).mean() > 0.2, "air around the body"
    fractions = [(center > lo) & (center < hi) for lo, hi in ((-150, -50), (20, 80))]
    assert all(f.mean() > 0.03 for f in fractions), "fat and soft tissue present"
    bodies = hu[tiny.labels > 0]
    assert 30 < np.median(bodies) < 400
