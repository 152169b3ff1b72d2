"""The vcf_pipeline computation and its tensors: a study screened through them gives exactly
the in-process result (same levels, masks, probabilities, findings), without any server."""

from __future__ import annotations

import numpy as np
import pytest

from engine.postprocess.levels import BODY, DISC, RIB_HEAD, SACRUM
from engine.screen import Screener
from engine.serving import spec as s
from engine.serving.pipeline_core import (
    PipelineProtocolError,
    batched_probabilities,
    decode,
    encode,
    read_spine,
)
from engine.settings import Settings
from engine.volume import Volume

CROP = 16
WINDOW = Settings().preprocess.hu_window


def spine(wedge: int = 13, loss: float = 0.5) -> tuple[Volume, np.ndarray]:
    """C7, T1-T12, L1-L5 and a sacrum on a 2 mm canonical grid; body ``wedge`` loses anterior height."""
    kinds = ["C"] + ["T"] * 12 + ["L"] * 5
    depth = 16 * ((len(kinds) * 13 + 43) // 16)
    cmap = np.zeros((depth, 48, 48), dtype=np.uint8)
    z = depth - 4
    for i, kind in enumerate(kinds):
        body = np.ones((10, 14, 12), dtype=bool)
        if i == wedge:
            lost = round(10 * loss)
            for a in range(14):
                cut = round(lost * (1 - a / 13))
                if cut:
                    body[10 - cut :, a, :] = False
        cmap[z - 10 : z, 16:30, 18:30][body] = BODY
        if kind == "T":
            cmap[z - 7 : z - 3, 28:32, 12:16] = RIB_HEAD
            cmap[z - 7 : z - 3, 28:32, 32:36] = RIB_HEAD
        cmap[z - 13 : z - 10, 16:30, 18:30] = DISC
        z -= 13
    cmap[z - 18 : z, 14:32, 16:32] = SACRUM
    hu = np.full(cmap.shape, -100, dtype=np.int16)
    hu[cmap == BODY], hu[cmap == DISC], hu[cmap == SACRUM], hu[cmap == RIB_HEAD] = 250, 80, 300, 400
    affine = np.eye(4)
    affine[:3, :3] = np.array([[0, 0, 2.0], [0, 2.0, 0], [2.0, 0, 0]])
    affine[:3, 3] = [-48.0, -48.0, -400.0]
    return Volume(hu=hu, affine=affine, study_instance_uid="1.2.826.0.1.9", series_instance_uid="1.2.826.0.1.9.1"), cmap


class KnownSpine:
    """In-process stand-in: logits from the known class map, a classifier that reads the crop."""

    seg_classes = ("background", "vertebral_body", "intervertebral_disc", "sacrum", "rib_head")
    crop_size = CROP

    @property
    def versions(self) -> dict[str, str]:
        return {"vertebra_seg": "unit", "vertebra_cls": "unit"}

    def __init__(self, cmap: np.ndarray):
        self.cmap = cmap

    def seg_logits(self, volume: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(3)
        logits = rng.normal(0.0, 0.5, size=(5, *volume.shape)).astype(np.float32)
        d, h, w = self.cmap.shape
        for c in range(5):
            logits[c, :d, :h, :w][self.cmap == c] += 6.0
        logits[0, d:], logits[0, :, h:], logits[0, :, :, w:] = 6.0, 6.0, 6.0
        return logits

    def cls_logits(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = crops.reshape(len(crops), -1).mean(axis=1)
        fracture = (8.0 * (mean - 0.3))[:, None].astype(np.float32)
        grades = np.stack([4 * mean, 3 * mean**2, -mean, np.sin(7 * mean)], axis=1).astype(np.float32)
        return fracture, grades

    # the InferenceBackend protocol, as the in-process core calls it
    def segment(self, volume: np.ndarray) -> np.ndarray:
        return self.seg_logits(volume)

    def classify(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from engine.serving.pipeline_core import classifier_probabilities

        return classifier_probabilities(*self.cls_logits(crops))


class ThroughPipeline(KnownSpine):
    """The same models behind the pipeline: read_spine -> tensors -> decode, as Triton does."""

    def __init__(self, cmap: np.ndarray, max_batch: int = 5):
        super().__init__(cmap)
        self.max_batch = max_batch
        self.batches: list[int] = []

    def _classify_logits(self, crops):
        self.batches.append(len(crops))
        return self.cls_logits(crops)

    def screen_tensor(self, tensor, spacing_mm):
        reading = read_spine(tensor, spacing_mm, self.seg_logits,
                             lambda c: batched_probabilities(self._classify_logits, c, self.max_batch), CROP,
                             WINDOW)
        tensors = encode(reading)
        spec = s.pipeline_spec()
        for t in spec.outputs:  # what the server returns has the declared dtypes and ranks
            assert tensors[t.name].dtype == np.dtype(s.NUMPY_DTYPES[t.dtype]), t.name
            assert tensors[t.name].ndim == len(t.dims), t.name
        return decode(tensors)


@pytest.fixture(scope="module")
def settings():
    return Settings()


def test_pipeline_path_equals_the_in_process_path(settings):
    volume, cmap = spine()
    local = Screener(settings, backend=KnownSpine(cmap)).screen_volume(volume)
    piped_backend = ThroughPipeline(cmap)
    piped = Screener(settings, backend=piped_backend).screen_volume(volume)
    a, b = local.result.model_dump(), piped.result.model_dump()
    assert a.pop("timings_ms").keys() >= {"segment", "classify"} and "infer" in b.pop("timings_ms")
    assert a == b
    assert local.result.status == "ok" and len(local.result.vertebrae) == 19
    assert {v.level: v.genant_grade for v in piped.result.vertebrae}["L1"] == 3
    np.testing.assert_array_equal(local.class_map, piped.class_map)
    assert [v.level for v in local.levels.vertebrae] == [v.level for v in piped.levels.vertebrae]
    for x, y in zip(local.levels.vertebrae, piped.levels.vertebrae):
        np.testing.assert_array_equal(x.mask, y.mask)
        np.testing.assert_array_equal(x.centroid_index, y.centroid_index)
        assert x.box == y.box and x.rib_bearing == y.rib_bearing and x.cut_by_scan == y.cut_by_scan
    assert local.levels.anchor == piped.levels.anchor and local.levels.notes == piped.levels.notes
    assert piped_backend.batches == [5, 5, 5, 3]  # 18 graded bodies in runs of max_batch; S1 not classified


def test_unclassified_levels_get_the_neutral_output():
    _, cmap = spine()
    backend = ThroughPipeline(cmap)
    tensor = np.zeros(cmap.shape, np.float32)
    reading = read_spine(tensor, np.array([2.0, 2.0, 2.0]), backend.seg_logits, backend.classify, CROP, WINDOW)
    levels = [v.level for v in reading.levels.vertebrae]
    s1 = levels.index("S1")
    assert not reading.classified[s1] and reading.classified.sum() == len(levels) - 1
    assert reading.fracture_probability[s1] == 0.0
    np.testing.assert_array_equal(reading.grade_probabilities[s1], [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(reading.grade_probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_a_study_without_vertebrae_round_trips():
    tensor = np.zeros((16, 16, 16), np.float32)
    logits = np.zeros((5, 16, 16, 16), np.float32)
    logits[0] = 5.0
    calls = []
    reading = read_spine(tensor, np.array([2.0, 2.0, 2.0]), lambda v: logits, lambda c: calls.append(c), CROP, WINDOW)
    back = decode(encode(reading))
    assert back.levels.vertebrae == [] and back.levels.anchor == "none" and calls == []
    assert back.levels.notes == reading.levels.notes and back.class_map.shape == (16, 16, 16)
    assert back.grade_probabilities.shape == (0, 4)


def test_the_count_of_bodies_left_unnamed_crosses_the_wire():
    # Without ribs and sacrum the column is found but cannot be named: the client must learn
    # how many bodies it holds, or it would report the study as screened and negative.
    _, cmap = spine()
    cmap[(cmap == RIB_HEAD) | (cmap == SACRUM)] = 0
    backend = ThroughPipeline(cmap)
    reading = read_spine(np.zeros(cmap.shape, np.float32), np.array([2.0, 2, 2]), backend.seg_logits, backend.classify,
                         CROP, WINDOW)
    assert reading.levels.vertebrae == [] and reading.levels.unnamed == 18
    assert decode(encode(reading)).levels.unnamed == 18
    named = read_spine(np.zeros(cmap.shape, np.float32), np.array([2.0, 2, 2]), *_named_backend(), CROP, WINDOW)
    assert named.levels.unnamed == 0 and decode(encode(named)).levels.unnamed == 0


def _named_backend():
    backend = ThroughPipeline(spine()[1])
    return backend.seg_logits, backend.classify


def test_inconsistent_tensors_are_refused_not_misread():
    _, cmap = spine()
    backend = ThroughPipeline(cmap)
    reading = read_spine(np.zeros(cmap.shape, np.float32), np.array([2.0, 2, 2]), backend.seg_logits, backend.classify, CROP, WINDOW)
    tensors = encode(reading)
    short = dict(tensors, **{s.PIPE_SOFT_MASKS: tensors[s.PIPE_SOFT_MASKS][:-7]})
    with pytest.raises(PipelineProtocolError, match="masks hold"):
        decode(short)
    missing = {k: v for k, v in tensors.items() if k != s.PIPE_BOXES}
    with pytest.raises(PipelineProtocolError, match="returned no boxes"):
        decode(missing)
    ragged = dict(tensors, **{s.PIPE_FRACTURE: tensors[s.PIPE_FRACTURE][:-1]})
    with pytest.raises(PipelineProtocolError, match="per-vertebra outputs of lengths"):
        decode(ragged)
