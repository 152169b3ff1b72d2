"""The screening core on a synthetic spine, with a stand-in backend that 'segments' perfectly.

The stand-in returns logits built from the known class map and a classifier answer per crop;
everything else (DALI preprocessing, level labelling, crops, morphometry, grading, fusion,
the result) is the real code path.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import CorruptStudyError
from engine.postprocess.levels import BODY, DISC, RIB_HEAD, SACRUM
from engine.results import ScreeningResult
from engine.screen import Screener, cut_crops
from engine.settings import Settings
from engine.volume import Volume

SPACING = 2.0  # the test volume is already at the model spacing, canonical orientation


def synthetic_spine(wedge_level_index: int | None = None, loss: float = 0.45):
    """HU volume + class map: C7, T1-T12, L1-L5, sacrum; bodies 10 voxels (20 mm) tall."""
    kinds = ["C"] + ["T"] * 12 + ["L"] * 5
    depth = 16 * ((len(kinds) * 13 + 28 + 15) // 16)
    cmap = np.zeros((depth, 48, 48), dtype=np.uint8)
    z = depth - 4
    for i, kind in enumerate(kinds):
        top = z
        body = np.zeros((10, 14, 12), dtype=bool)
        body[:] = True
        if i == wedge_level_index:
            # wedge: the anterior (low axis1 index = anterior) part loses height at the top
            lost = int(round(10 * loss))
            for a in range(14):
                cut = int(round(lost * (1 - a / 13)))
                body[10 - cut :, a, :] = False if cut else body[10 - cut :, a, :]
        region = cmap[top - 10 : top, 16:30, 18:30]
        region[body] = BODY
        if kind == "T":
            cmap[top - 7 : top - 3, 28:32, 12:16] = RIB_HEAD
            cmap[top - 7 : top - 3, 28:32, 32:36] = RIB_HEAD
        cmap[top - 13 : top - 10, 16:30, 18:30] = DISC
        z -= 13
    cmap[z - 18 : z, 14:32, 16:32] = SACRUM
    hu = np.full(cmap.shape, -100, dtype=np.int16)
    hu[cmap == BODY] = 250
    hu[cmap == DISC] = 80
    hu[cmap == SACRUM] = 300
    hu[cmap == RIB_HEAD] = 400
    # axis0 -> Superior, axis1 -> Posterior, axis2 -> Left: LPS-aligned, z flipped
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    affine[:3, :3] = np.array([[0, 0, SPACING], [0, SPACING, 0], [SPACING, 0, 0]])
    affine[:3, 3] = [-48.0, -48.0, -400.0]
    volume = Volume(hu=hu, affine=affine, study_instance_uid="1.2.3.4", series_instance_uid="1.2.3.4.5")
    return volume, cmap


class PerfectBackend:
    """Logits from a known class map (resampled by nothing: the grid is the model grid)."""

    seg_classes = ("background", "vertebral_body", "intervertebral_disc", "sacrum", "rib_head")
    crop_size = 16

    def __init__(self, cmap: np.ndarray, fractured: set[int] = frozenset()):
        self.cmap = cmap
        self.fractured = fractured
        self.crops_seen = 0

    @property
    def versions(self):
        return {"vertebra_seg": "test", "vertebra_cls": "test"}

    def segment(self, volume):
        logits = np.full((5, *volume.shape), -8.0, dtype=np.float32)
        d, h, w = self.cmap.shape
        for c in range(5):
            logits[c, :d, :h, :w][self.cmap == c] = 8.0
        logits[0, d:, :, :] = 8.0
        logits[0, :, h:, :] = 8.0
        logits[0, :, :, w:] = 8.0
        return logits

    def classify(self, crops):
        n = crops.shape[0]
        prob = np.array([0.95 if self.crops_seen + i in self.fractured else 0.05 for i in range(n)], np.float32)
        grades = np.tile(np.array([0.97, 0.01, 0.01, 0.01], np.float32), (n, 1))
        for i in range(n):
            if self.crops_seen + i in self.fractured:
                grades[i] = [0.02, 0.02, 0.06, 0.90]
        self.crops_seen += n
        return prob, grades


@pytest.fixture(scope="module")
def settings():
    return Settings()


def test_levels_and_planted_grade3_wedge_are_found(settings):
    wedge = 13  # index in C7, T1..T12, L1..L5 -> L1; crops come in the same order
    volume, cmap = synthetic_spine(wedge_level_index=wedge, loss=0.5)
    backend = PerfectBackend(cmap, fractured={wedge})
    out = Screener(settings, backend=backend).screen_volume(volume)
    result = out.result
    assert result.status == "ok"
    levels = [v.level for v in result.vertebrae]
    assert levels[:2] == ["C7", "T1"] and "T12" in levels and levels[-2:] == ["L5", "S1"]
    by_level = {v.level: v for v in result.vertebrae}
    assert by_level["L1"].genant_grade == 3
    assert result.flag is True and result.max_genant_grade == 3
    others = {v.level: v.genant_grade for v in result.vertebrae if v.level != "L1"}
    assert set(others.values()) == {0}, others
    assert by_level["L1"].morphometric_grade == 3 and by_level["L1"].height_loss > 0.4
    # timings of every stage are reported
    assert {"preprocess", "segment", "classify", "postprocess"} <= set(result.timings_ms)


def test_centroids_are_lps_millimetres(settings):
    volume, cmap = synthetic_spine()
    out = Screener(settings, backend=PerfectBackend(cmap)).screen_volume(volume)
    t1 = next(v for v in out.result.vertebrae if v.level == "T1")
    # T1 body spans axis1 16..29, axis2 18..29 -> y = -48 + 2*22.5 = -3, x = -48 + 2*23.5 = -1
    assert t1.centroid_lps_mm[0] == pytest.approx(-1.0, abs=1.0)
    assert t1.centroid_lps_mm[1] == pytest.approx(-3.0, abs=1.0)


def test_a_bad_study_gets_an_error_result_and_the_run_goes_on(settings, tmp_path):
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    volume, cmap = synthetic_spine()
    screener = Screener(settings, backend=PerfectBackend(cmap))
    out = screener.screen(tmp_path, study_hint="folder-1")
    assert out.result.status in ("error", "not_eligible") and out.result.reason
    assert out.result.study_instance_uid == "folder-1"
    assert screener.screen_volume(volume).result.status == "ok"


def test_a_spine_whose_levels_cannot_be_named_is_not_screened_rather_than_negative(settings):
    # No rib and no sacrum in view: the bodies are found, but a body without a level cannot be
    # reported. An `ok` result with no vertebra would read as a screened spine without a
    # fracture, and the planted grade 3 wedge would go unreported.
    volume, cmap = synthetic_spine(wedge_level_index=13, loss=0.5)
    cmap[(cmap == RIB_HEAD) | (cmap == SACRUM)] = 0
    out = Screener(settings, backend=PerfectBackend(cmap, fractured={13})).screen_volume(volume)
    result = out.result
    assert result.status == "not_eligible" and result.reason_code == "levels_not_named", result.reason
    assert result.reason.startswith("levels_not_named: 18 vertebral bodies were found but no level could be named")
    assert not result.vertebrae and result.flag is False and result.level_naming is None
    assert out.levels is not None and out.levels.unnamed == 18


def test_bodies_left_unnamed_beside_named_ones_are_counted_in_the_result(settings, monkeypatch):
    # Some bodies named, others not (above the known levels): the study is screened, and the
    # result says how many bodies it could not report.
    import engine.serving.pipeline_core as core

    real = core.label_levels

    def two_left_unnamed(*args, **kwargs):
        levels = real(*args, **kwargs)
        levels.unnamed = 2
        return levels

    monkeypatch.setattr(core, "label_levels", two_left_unnamed)
    volume, cmap = synthetic_spine()
    result = Screener(settings, backend=PerfectBackend(cmap)).screen_volume(volume).result
    assert result.status == "ok" and len(result.vertebrae) == 19
    assert result.level_naming.unnamed_bodies == 2
    assert ScreeningResult.from_json(result.to_json_line()).level_naming.unnamed_bodies == 2


def test_a_series_without_any_spine_is_not_screened(settings):
    volume, cmap = synthetic_spine()
    out = Screener(settings, backend=PerfectBackend(np.zeros_like(cmap))).screen_volume(volume)
    assert out.result.status == "not_eligible" and out.result.reason_code == "no_spine", out.result.reason


def test_cut_crops_centres_and_pads_with_air():
    tensor = np.arange(20 * 20 * 20, dtype=np.float32).reshape(20, 20, 20)
    crops = cut_crops(tensor, np.array([[10, 10, 10], [0, 0, 0]]), 4)
    assert crops.shape == (2, 1, 4, 4, 4)
    np.testing.assert_array_equal(crops[0, 0], tensor[8:12, 8:12, 8:12])
    assert crops[1, 0, 0, 0, 0] == 0 and crops[1, 0, 2, 2, 2] == tensor[0, 0, 0]
    assert isinstance(CorruptStudyError("x").code, str)
