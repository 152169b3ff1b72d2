"""Reading truth files: study folders, errors, and the layout the phantom generator writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.dicom import load_study
from engine.evaluate.dice import label_centroids, labels_affine_from_truth
from engine.evaluate.truth import TruthFileError, load_labels, load_truth, study_folders
from engine.phantom import PhantomConfig, generate_study, write_study
from engine.volume import index_to_lps


def test_study_folders_are_those_with_a_truth_file(tmp_path):
    for name in ("b", "a", "c/nested"):
        (tmp_path / name).mkdir(parents=True)
    for name in ("b", "a", "c/nested"):
        (tmp_path / name / "truth.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    assert study_folders(tmp_path) == [tmp_path / "a", tmp_path / "b", tmp_path / "c" / "nested"]
    assert study_folders(tmp_path / "a") == [tmp_path / "a"]


def test_unreadable_truth_files_name_the_file(tmp_path):
    with pytest.raises(TruthFileError, match="has no truth.json"):
        load_truth(tmp_path)
    (tmp_path / "truth.json").write_text("{not json")
    with pytest.raises(TruthFileError, match="truth.json is not valid JSON"):
        load_truth(tmp_path)
    assert load_labels(tmp_path) is None
    np.savez(tmp_path / "labels.npz", labels=np.zeros((2, 2), np.uint8))
    with pytest.raises(TruthFileError, match="must be 3-D"):
        load_labels(tmp_path)


def test_a_generated_phantom_study_is_read_and_its_label_grid_placed(tmp_path):
    """The real writer's layout: truth.json, labels.npz (no affine), DICOM stacked by the
    loader in its own order; the label grid is found from the truth centroids."""
    study = generate_study(11, PhantomConfig.fast(slices_min=120, slices_max=140))
    folder = write_study(study, tmp_path)
    truth = load_truth(folder)
    raw = json.loads((folder / "truth.json").read_text())
    assert truth.study_instance_uid == raw["study_instance_uid"]
    assert [v.level for v in truth.vertebrae] == [v["level"] for v in raw["vertebrae"]]
    assert [c.type for c in truth.confounders] == [c["type"] for c in raw["confounders"]]
    labels = load_labels(folder)
    volume = load_study(folder).volume
    assert labels.labels.shape == volume.hu.shape
    values = [v.label for v in truth.vertebrae]
    affine = labels_affine_from_truth(labels.labels, volume.affine, [v.centroid_lps_mm for v in truth.vertebrae], values)
    assert affine is not None
    centres = index_to_lps(affine, label_centroids(labels.labels, values))
    np.testing.assert_allclose(centres, [v.centroid_lps_mm for v in truth.vertebrae], atol=0.01)
