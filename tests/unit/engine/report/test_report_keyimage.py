"""The key image: its reformat geometry, label placement, and the PNG of a screened study."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from engine.report.keyimage import (
    FOOTER,
    key_image_path,
    key_image_size,
    label_positions,
    model_centres,
    naming_warning,
    plausible_centres,
    render_key_image,
    sagittal_view,
    spine_midline,
    spread_labels,
    trunk_midline,
)
from engine.results import LevelNaming, ScreeningResult


def test_midline_interpolates_between_centroids_and_holds_beyond_them():
    centres = np.array([[30.0, 5.0, 20.0], [10.0, 5.0, 10.0]])  # unsorted on purpose
    line = spine_midline(40, centres, fallback=99.0)
    assert line[10] == pytest.approx(10.0) and line[30] == pytest.approx(20.0)
    assert line[20] == pytest.approx(15.0)
    assert line[0] == pytest.approx(10.0) and line[39] == pytest.approx(20.0)
    np.testing.assert_allclose(spine_midline(5, np.zeros((0, 3)), fallback=7.5), 7.5)


def test_view_puts_superior_up_and_anterior_left():
    tensor = np.zeros((20, 16, 12), np.float32)
    tensor[18, 2, 6] = 1.0  # superior, anterior
    tensor[1, 14, 6] = 0.5  # inferior, posterior
    view = sagittal_view(tensor, np.array([2.0, 2.0, 2.0]), np.array([[10.0, 8.0, 6.0]]))
    assert view.shape == (20, 16)
    assert view.image[20 - 1 - 18, 2] == 1.0
    assert view.image[20 - 1 - 1, 14] == 0.5
    np.testing.assert_allclose(view.to_pixel(np.array([18.0, 2.0, 6.0])), [1.0, 2.0])


def test_the_slab_follows_a_curved_spine_that_a_flat_plane_misses():
    depth, width = 40, 40
    tensor = np.zeros((depth, 8, width), np.float32)
    lateral = np.round(20 + 12 * np.sin(np.linspace(0, np.pi, depth))).astype(int)
    tensor[np.arange(depth), 4, lateral] = 1.0  # a bright spine wandering 12 voxels sideways
    every = np.stack([np.arange(depth), np.full(depth, 4), lateral], axis=1).astype(float)
    centres = every[[0, 8, 16, 24, 32, 39]]  # centroids every 16 mm, as vertebrae
    curved = sagittal_view(tensor, np.array([2.0, 2.0, 2.0]), centres, half_width_mm=4.0)
    assert curved.image[:, 4].min() == 1.0  # every slice shows the spine
    flat = sagittal_view(tensor, np.array([2.0, 2.0, 2.0]), np.array([[0.0, 4.0, 20.0]]),
                         half_width_mm=4.0)
    assert flat.image[:, 4].min() == 0.0  # a straight plane loses it at the apex


def test_without_usable_centroids_the_slab_follows_the_trunk():
    tensor = np.zeros((30, 10, 60), np.float32)
    tensor[:, :, 30:50] = 0.2  # the body lies right of the grid centre (columns 30..49)
    tensor[:, 5, 40] = 1.0  # its spine, at the body's lateral centre
    spacing = np.array([2.0, 2.0, 2.0])
    assert trunk_midline(tensor) == pytest.approx(np.full(30, 39.5))
    outlier = np.array([[15.0, 5.0, 1.0]])  # a mislabelled component at the edge of the grid
    for centres in (np.zeros((0, 3)), outlier):
        view = sagittal_view(tensor, spacing, centres, half_width_mm=2.0)
        assert view.image[:, 5].min() == 1.0, centres
    assert len(plausible_centres(outlier, trunk_midline(tensor), tensor.shape, 30.0)) == 0


def test_view_crops_the_padding():
    tensor = np.ones((32, 16, 16), np.float32)
    view = sagittal_view(tensor, np.array([2.0, 2.0, 2.0]), np.zeros((0, 3)), content_shape=(25, 12, 16))
    assert view.shape == (25, 12) and view.top_index == 24


def test_spread_labels_keeps_distances_and_bounds():
    rows = np.array([10.0, 11.0, 12.0, 50.0])
    spread = spread_labels(rows, 5.0, 0.0, 100.0)
    assert np.all(np.diff(spread) >= 5.0 - 1e-9)
    assert spread[-1] == 50.0  # far enough already: not moved
    crowded = spread_labels(np.array([96.0, 97.0, 98.0]), 5.0, 0.0, 100.0)
    assert crowded.max() <= 100.0 and np.all(np.diff(crowded) >= 5.0 - 1e-9)
    assert spread_labels(np.zeros(0), 5.0, 0.0, 1.0).size == 0


def test_labels_sit_on_their_vertebrae(screened):
    out = screened.output
    view = sagittal_view(out.model_input.tensor, out.model_input.spacing,
                         model_centres(out.result, out.model_input), out.model_input.content_shape)
    labels = label_positions(out.result, out.model_input, view)
    assert [lb.level for lb in labels] == [v.level for v in out.result.vertebrae]
    assert len(labels) == len(screened.study.levels) + 1  # T9..L5 and S1
    # the model grid is the source grid here: rows count down from the top slice
    for label, centre in zip(labels, screened.study.body_centres):
        if label.level == "L1":
            continue  # the wedge moved its centroid
        assert label.row == pytest.approx(view.top_index - centre[0], abs=1.0)
        assert label.column == pytest.approx(centre[1], abs=1.0)
    l1 = next(lb for lb in labels if lb.level == "L1")
    assert l1.genant_grade == 3 and "grade 3" in l1.text and "% loss" in l1.text
    assert next(lb for lb in labels if lb.level == "T9").text == "T9"


def test_key_image_png_of_a_screened_study(screened, tmp_path):
    out = screened.output
    path = render_key_image(out.result, out.model_input, key_image_path(tmp_path, out.result))
    assert path.name == f"{out.result.study_instance_uid}.png" and path.is_file()
    assert not list(tmp_path.glob("*.part"))
    pixels = mpimg.imread(path)
    view = sagittal_view(out.model_input.tensor, out.model_input.spacing,
                         model_centres(out.result, out.model_input), out.model_input.content_shape)
    width, height = key_image_size(view)
    assert pixels.shape[:2] == (height, width)
    assert float(pixels[..., :3].std()) > 0.05
    # the grade-3 colour (red) is drawn: some pixels are strongly red
    red = (pixels[..., 0] > 0.9) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)
    assert red.sum() > 200
    assert "not for diagnosis" in FOOTER


def test_the_key_image_says_when_the_level_names_are_in_doubt(screened, tmp_path):
    out = screened.output
    doubt = LevelNaming(anchor="ribs+sacrum", doubt="rib count",
                        notes=("the number of rib-bearing vertebrae is not seen: 13 rib-bearing vertebrae (T13) ...",))
    sure = LevelNaming(anchor="ribs+cervical+sacrum")
    assert "rib count is not verified" in naming_warning(out.result.model_copy(update={"level_naming": doubt}))
    close = LevelNaming(anchor="ribs+sacrum", doubt="close call")
    assert "another reading of the anatomy" in naming_warning(out.result.model_copy(update={"level_naming": close}))
    assert naming_warning(out.result.model_copy(update={"level_naming": sure})) is None
    unnamed = LevelNaming(anchor="ribs+sacrum", doubt="close call", unnamed_bodies=2)
    both = naming_warning(out.result.model_copy(update={"level_naming": unnamed}))
    assert both.startswith("level names may be one off") and both.endswith("2 vertebral bodies found but not named: not graded")
    alone = LevelNaming(anchor="ribs+sacrum", unnamed_bodies=1)
    assert naming_warning(out.result.model_copy(update={"level_naming": alone})) == "1 vertebral body found but not named: not graded"

    def warning_band(naming: LevelNaming) -> np.ndarray:
        result = out.result.model_copy(update={"level_naming": naming})
        pixels = mpimg.imread(render_key_image(result, out.model_input, tmp_path / f"{naming.in_doubt}.png"))
        return pixels[78:100, :400, :3]  # below the legend, above the image

    def light_blue(band: np.ndarray) -> int:
        return int(((band[..., 2] > 0.8) & (band[..., 0] < 0.7)).sum())

    assert light_blue(warning_band(doubt)) > 50 and light_blue(warning_band(sure)) == 0


def test_key_image_refuses_a_failed_study(screened, tmp_path):
    failed = ScreeningResult.error("1.2.3", ValueError("boom"))
    with pytest.raises(ValueError, match="ok results only"):
        render_key_image(failed, screened.output.model_input, tmp_path / "x.png")
