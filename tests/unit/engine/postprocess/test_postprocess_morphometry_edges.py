"""Heights read between the endplate edges of a synthetic CT, guided by a 2 mm mask that is wrong.

The CT is drawn on its own grid (0.7 mm pixels, 1.25 or 2.5 mm slices; each voxel holds the
share of it inside the body, as a slice profile averages; then a kernel's blur and noise):
disc and soft tissue at 80 HU, cancellous bone at 220 HU, a 1 mm cortex at 600 HU on each
endplate. The mask is a soft 2 mm occupancy of a body that is *not* the CT's body where a test
says so: that is the error the edges are there to correct (the segmentation fills in a
collapsed endplate).
"""

from __future__ import annotations

import numpy as np
import pytest
from postprocess_bodies import Body, draw, grid_affine, occupancy_of, tilted_frame
from scipy import ndimage

from engine.postprocess import ClassifierOutput, VertebraInput, findings_from_vertebrae
from engine.postprocess.morphometry import (
    IMAGE_HEIGHT_INSET,
    IMAGE_MIN_SLICES_PER_HEIGHT,
    image_resolves_body,
    image_resolves_endplates,
    measure_body,
)
from engine.settings import GradingSettings

DISC_HU, CANCELLOUS_HU, CORTEX_HU = 80.0, 220.0, 600.0


def ct_of(body: Body, centre, axis, anterior, spacing, rng, *, disc_hu=DISC_HU, flip=False, noise_hu=15.0):
    """(hu, affine) of ``body`` at ``centre`` with a 1 mm endplate cortex, blurred and noisy."""
    reach = 0.5 * np.sqrt(body.depth**2 + body.width**2 + max(body.posterior, body.anterior) ** 2) + 12
    shape = tuple(int(np.ceil(2 * reach / d)) + 1 for d in spacing)
    affine = grid_affine(spacing, np.zeros(3), flip)
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array(shape) - 1) / 2 + rng.uniform(-0.5, 0.5, 3))
    outer = occupancy_of(body, affine, shape, centre, axis, anterior, soft=True)
    inner_body = Body(body.posterior - 2.0, body.anterior - 2.0, body.dip, body.depth, body.width,
                      body.elliptic)
    inner = np.minimum(occupancy_of(inner_body, affine, shape, centre, axis, anterior, soft=True), outer)
    hu = disc_hu + (CORTEX_HU - disc_hu) * (outer - inner) + (CANCELLOUS_HU - disc_hu) * inner
    hu = ndimage.gaussian_filter(hu, 0.6 / np.array(spacing))  # the kernel's blur
    hu += rng.normal(0.0, noise_hu, hu.shape)
    return np.rint(hu).astype(np.int16), affine


def heights(result) -> np.ndarray:
    return np.array([result.anterior_mm, result.middle_mm, result.posterior_mm])


def truth(body: Body) -> np.ndarray:
    """True (anterior, middle, posterior) heights where the image path reads them: a tenth of
    the depth inside each wall."""
    return body.height_at(np.array([1.0 - IMAGE_HEIGHT_INSET, 0.5, IMAGE_HEIGHT_INSET]))


def own_loss(anterior_middle_posterior: np.ndarray) -> float:
    anterior, middle, posterior = anterior_middle_posterior
    return 1.0 - min(anterior, middle) / posterior


WEDGE = Body(posterior=24.0, anterior=15.6, depth=30.0, width=40.0)  # 35% anterior loss
FILLED_WEDGE = Body(posterior=24.0, anterior=19.2, depth=30.0, width=40.0)  # the mask reads 20%
BICONCAVE = Body(posterior=22.0, anterior=22.0, dip=6.0, depth=28.0, width=38.0)
FILLED_BICONCAVE = Body(posterior=22.0, anterior=22.0, dip=2.0, depth=28.0, width=38.0)


@pytest.mark.parametrize("slices_mm", [1.25, 2.5])
@pytest.mark.parametrize("shown, segmented", [(WEDGE, FILLED_WEDGE), (BICONCAVE, FILLED_BICONCAVE)],
                         ids=["wedge", "biconcave"])
def test_edges_recover_the_collapse_a_filled_in_mask_hides(slices_mm, shown, segmented):
    rng = np.random.default_rng(int(slices_mm * 100) + int(shown.anterior))
    axis, anterior = tilted_frame(10, 4)
    mask, affine, centre = draw(segmented, (2.0, 2.0, 2.0), axis, anterior, rng, soft=True)
    hu, hu_affine = ct_of(shown, centre, axis, anterior, (slices_mm, 0.7, 0.7), rng)
    from_mask = measure_body(mask, affine, axis, anterior)
    from_edges = measure_body(mask, affine, axis, anterior, hu, hu_affine)
    true_loss = own_loss(truth(shown))
    assert true_loss - own_loss(heights(from_mask)) > 0.08  # the mask alone under-reads the collapse
    # 2.5 mm slices blur a 6 mm central dip: two thirds of what the mask hides comes back.
    assert own_loss(heights(from_edges)) == pytest.approx(true_loss, abs=0.04 if slices_mm < 2 else 0.07)
    # Each height within 2.5 mm; the edges read long by about half a millimetre at each
    # endplate (the thin bright cortex pulls the steepest fall outwards), so 2-5% on every
    # height alike, which a ratio of heights barely feels.
    error = heights(from_edges) - truth(shown)
    assert np.all(np.abs(error) <= 2.5), f"errors (a, m, p) {error.round(2)} mm"
    assert from_edges.edge_fraction > 0.95
    assert from_mask.edge_fraction == 0.0


def test_edges_read_a_normal_body_on_a_flipped_grid_within_a_millimetre():
    rng = np.random.default_rng(21)
    body = Body(posterior=18.0, anterior=17.0, depth=26.0, width=34.0)
    axis, anterior = tilted_frame(-8, 12)
    mask, affine, centre = draw(body, (2.0, 2.0, 2.0), axis, anterior, rng, soft=True)
    hu, hu_affine = ct_of(body, centre, axis, anterior, (0.7, 0.7, 1.25), rng, flip=True)
    result = measure_body(mask, affine, axis, anterior, hu, hu_affine)
    error = heights(result) - truth(body)
    assert np.all(np.abs(error) <= 0.8), error.round(2)


def test_no_edge_in_the_image_keeps_the_masks_ends():
    """A bone-filled (fused) disc has no edge to find: the mask's ends stay."""
    rng = np.random.default_rng(5)
    axis, anterior = tilted_frame(0, 0)
    mask, affine, centre = draw(WEDGE, (2.0, 2.0, 2.0), axis, anterior, rng, soft=True)
    hu = (np.full((40, 60, 60), CANCELLOUS_HU) + rng.normal(0, 10, (40, 60, 60))).astype(np.int16)
    hu_affine = grid_affine((2.5, 0.7, 0.7), centre - np.array([21.0, 21.0, 50.0]))
    from_mask = measure_body(mask, affine, axis, anterior)
    from_edges = measure_body(mask, affine, axis, anterior, hu, hu_affine)
    assert from_edges.edge_fraction < 0.05
    assert np.allclose(from_edges.band_heights_mm, from_mask.band_heights_mm, atol=0.6)


def test_the_volume_needs_its_affine():
    axis, anterior = tilted_frame()
    mask, affine, _ = draw(WEDGE, (2.0, 2.0, 2.0), axis, anterior, np.random.default_rng(1), soft=True)
    with pytest.raises(ValueError, match="both hu and hu_affine"):
        measure_body(mask, affine, axis, anterior, hu=np.zeros((4, 4, 4), np.int16))


def test_only_an_image_finer_than_the_model_grid_serves():
    assert image_resolves_endplates(grid_affine((2.5, 0.7, 0.7), np.zeros(3)))
    assert image_resolves_endplates(grid_affine((0.6, 0.6, 3.0), np.zeros(3), flip=True))
    assert not image_resolves_endplates(grid_affine((3.0, 2.0, 2.0), np.zeros(3)))  # a 192 matrix
    assert not image_resolves_endplates(grid_affine((5.0, 0.7, 0.7), np.zeros(3)))  # thick slices


@pytest.mark.parametrize("pixel_mm, from_image", [(0.7, True), (2.0, False)])
def test_findings_read_the_image_only_where_it_resolves_the_endplates(pixel_mm, from_image):
    rng = np.random.default_rng(13)
    axis, anterior = np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0])
    mask, affine, centre = draw(FILLED_WEDGE, (2.0, 2.0, 2.0), axis, anterior, rng, soft=True)
    hu, hu_affine = ct_of(WEDGE, centre, axis, anterior, (1.25, pixel_mm, pixel_mm), rng)
    vertebra = VertebraInput("L1", mask, affine, ClassifierOutput(0.9, (0.05, 0.05, 0.8, 0.1)))
    (plain,) = findings_from_vertebrae([vertebra], GradingSettings())
    (read,) = findings_from_vertebrae([vertebra], GradingSettings(), hu, hu_affine)
    if from_image:
        assert read.height_loss == pytest.approx(own_loss(truth(WEDGE)), abs=0.04)
        assert read.height_loss > plain.height_loss + 0.06
        assert (read.morphometric_grade, plain.morphometric_grade) == (2, 0)
    else:
        assert read.heights_mm == plain.heights_mm


def test_a_body_spanning_few_slices_is_not_read_from_the_image():
    assert IMAGE_MIN_SLICES_PER_HEIGHT == 6.0
    thin, thick = grid_affine((1.25, 0.7, 0.7), np.zeros(3)), grid_affine((3.0, 0.7, 0.7), np.zeros(3), flip=True)
    assert image_resolves_body(thin, 7.5) and not image_resolves_body(thin, 7.4)
    assert image_resolves_body(thick, 18.0) and not image_resolves_body(thick, 17.9)  # a T2 on 3 mm slices


@pytest.mark.parametrize("body, from_image", [(WEDGE, True), (Body(posterior=14.0, anterior=9.8, depth=18.0, width=26.0), False)],
                         ids=["lumbar-size", "upper-thoracic-size"])
def test_on_3mm_slices_only_a_tall_body_is_read_from_the_image(body, from_image):
    """On 2.5-3 mm slices the edges of a small upper thoracic body are misread (on 20
    development phantoms the over-read normal T1-T3 bodies fell from 16 to 6 of 52 with the
    mask's heights): a body spanning fewer than six slices keeps the mask's heights."""
    rng = np.random.default_rng(5)
    axis, anterior = np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0])
    mask, affine, centre = draw(body, (2.0, 2.0, 2.0), axis, anterior, rng, soft=True)
    hu, hu_affine = ct_of(body, centre, axis, anterior, (3.0, 0.7, 0.7), rng)
    assert image_resolves_endplates(hu_affine)
    vertebra = VertebraInput("T2", mask, affine, ClassifierOutput(0.9, (0.05, 0.05, 0.8, 0.1)))
    (plain,) = findings_from_vertebrae([vertebra], GradingSettings())
    (read,) = findings_from_vertebrae([vertebra], GradingSettings(), hu, hu_affine)
    assert (read.heights_mm != plain.heights_mm) == from_image
