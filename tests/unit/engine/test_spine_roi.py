"""The region around the spine that the segmenter runs on (engine.spine_roi, Screener.spine_input)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.spine_roi import BONE_HU, hu_to_unit, spine_region
from engine.volume import index_to_lps

WINDOW = (-200.0, 1200.0)
SPACING = np.array([2.0, 2.0, 2.0])
BONE = hu_to_unit(400.0, WINDOW)
SOFT = hu_to_unit(40.0, WINDOW)


def trunk(shape=(160, 192, 192)) -> np.ndarray:
    """Soft tissue in an ellipse, as the model input sees it (values in [0, 1])."""
    _, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    body = ((y - shape[1] / 2) / (shape[1] * 0.42)) ** 2 + ((x - shape[2] / 2) / (shape[2] * 0.46)) ** 2 <= 1
    return np.where(body, SOFT, 0.0).astype(np.float32) * np.ones((shape[0], 1, 1), np.float32)


def add_column(tensor: np.ndarray, centre_of_z, radius: float = 10.0) -> None:
    """A vertebral column: a bony disc of ``radius`` voxels in every slice, centre (y, x) = f(z)."""
    _, height, width = tensor.shape
    y, x = np.ogrid[:height, :width]
    for z in range(tensor.shape[0]):
        cy, cx = centre_of_z(z)
        tensor[z][(y - cy) ** 2 + (x - cx) ** 2 <= radius**2] = BONE


def test_a_straight_spine_gives_a_box_around_it_on_the_grid():
    tensor = trunk()
    add_column(tensor, lambda z: (120, 96))
    region = spine_region(tensor, SPACING, roi_mm=160.0, grid_multiple=16, hu_window=WINDOW)
    assert region.shape[0] % 16 == 0 and region.shape[1] % 16 == 0
    assert region.shape[0] < 192 and region.shape[1] < 192
    (y0, x0), (y1, x1) = region.lo, region.hi
    # 160 mm at 2 mm: at least 40 voxels each side of the column centre.
    assert y0 <= 120 - 40 and y1 >= 120 + 40, region
    assert x0 <= 96 - 40 and x1 >= 96 + 40, region
    assert np.allclose(region.path[:, 1], 120, atol=2) and np.allclose(region.path[:, 2], 96, atol=2)


def test_a_scoliotic_spine_widens_the_box_to_its_whole_path():
    tensor = trunk()
    shift = lambda z: 96 + 25 * np.sin(np.pi * z / 160)  # apex 50 mm to the left
    add_column(tensor, lambda z: (120, shift(z)))
    region = spine_region(tensor, SPACING, roi_mm=160.0, grid_multiple=16, hu_window=WINDOW)
    (_, x0), (_, x1) = region.lo, region.hi
    assert x0 <= 96 - 40 and x1 >= 96 + 25 + 40 - 2, region


def test_lateral_bone_in_a_few_slabs_does_not_pull_the_box():
    """Iliac wings and a hip prosthesis: big, dense, lateral, in some slabs only."""
    tensor = trunk()
    add_column(tensor, lambda z: (120, 96), radius=9.0)
    tensor[:40, 70:130, 160:185] = 1.0  # a wide dense block 80-90 voxels (170 mm) to the left
    with_block = spine_region(tensor, SPACING, roi_mm=160.0, grid_multiple=16, hu_window=WINDOW)
    assert with_block.hi[1] <= 96 + 40 + 16, with_block
    assert np.allclose(with_block.path[:, 2], 96, atol=2)


def test_ribs_do_not_move_the_spine_centre():
    tensor = trunk()
    add_column(tensor, lambda z: (120, 96))
    _, height, width = tensor.shape
    y, x = np.ogrid[:height, :width]
    for z in range(0, 100, 6):  # a rib arc every 12 mm, one slice thick
        arc = np.abs(np.hypot(y - 100, x - 96) - 70) <= 1.5
        tensor[z][arc & (y < 150)] = BONE
    region = spine_region(tensor, SPACING, roi_mm=160.0, grid_multiple=16, hu_window=WINDOW)
    assert np.allclose(region.path[:, 1], 120, atol=3) and np.allclose(region.path[:, 2], 96, atol=3), region.path


@pytest.mark.parametrize("roi_mm", [0.0, 400.0])
def test_no_crop_when_off_or_when_the_box_would_not_be_smaller(roi_mm):
    tensor = trunk()
    add_column(tensor, lambda z: (120, 96))
    region = spine_region(tensor, SPACING, roi_mm=roi_mm, grid_multiple=16, hu_window=WINDOW)
    assert region.lo == (0, 0) and region.hi == (192, 192)


def test_no_bone_keeps_the_whole_plane():
    region = spine_region(trunk(), SPACING, roi_mm=160.0, grid_multiple=16, hu_window=WINDOW)
    assert region.lo == (0, 0) and region.hi == (192, 192)


def test_box_stays_inside_the_grid_for_a_spine_near_the_edge():
    tensor = trunk()
    add_column(tensor, lambda z: (180, 20), radius=8.0)
    region = spine_region(tensor, SPACING, roi_mm=160.0, grid_multiple=16, hu_window=WINDOW)
    assert region.lo[0] >= 0 and region.lo[1] >= 0 and region.hi[0] <= 192 and region.hi[1] <= 192
    assert region.shape[0] % 16 == 0 and region.shape[1] % 16 == 0
    assert region.lo[0] <= 180 - 10 < 180 + 10 <= region.hi[0]


def test_bone_threshold_sits_between_soft_tissue_and_osteoporotic_bone():
    assert hu_to_unit(60.0, WINDOW) < hu_to_unit(BONE_HU, WINDOW) < hu_to_unit(200.0, WINDOW)


def test_screener_spine_input_keeps_every_voxel_at_its_lps_position(tmp_path):
    """The cut model input maps each kept voxel to the same LPS point as the whole grid did."""
    from engine.preprocess import ModelInput
    from engine.screen import Screener
    from engine.settings import Settings

    tensor = trunk((96, 192, 176))
    add_column(tensor, lambda z: (120, 90))
    tensor += np.random.default_rng(0).uniform(0, 0.01, tensor.shape).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-30.0, 12.0, -150.0)
    whole = ModelInput(tensor=tensor, affine=affine, source_shape=(200, 512, 512), source_affine=np.eye(4),
                       study_instance_uid="1.2.3", series_instance_uid="1.2.3.4",
                       content_shape=(96, 150, 176), crop_start=(0, 4, 0))
    screener = Screener.__new__(Screener)  # the crop needs the settings only, not the models
    screener.settings = Settings()
    cut = screener.spine_input(whole)
    assert cut.tensor.shape[0] == 96 and cut.tensor.shape[1] < 192 and cut.tensor.shape[2] < 176
    assert cut.tensor.flags["C_CONTIGUOUS"]
    (_, y0, x0) = np.array(cut.crop_start) - np.array(whole.crop_start)
    for index in [(0, 0, 0), (50, 7, 11), (95, cut.tensor.shape[1] - 1, cut.tensor.shape[2] - 1)]:
        source = np.array(index) + (0, y0, x0)
        assert np.allclose(index_to_lps(cut.affine, np.array(index, float)), index_to_lps(affine, source.astype(float)))
        assert cut.tensor[index] == tensor[tuple(source)]
    # Content (non-padding) extent is clipped to the box.
    assert cut.content_shape[0] == 96
    assert cut.content_shape[1] == max(0, min(150, y0 + cut.tensor.shape[1]) - y0)
    assert cut.content_shape[2] == cut.tensor.shape[2]
