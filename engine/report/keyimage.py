"""The key image of a study: a curved sagittal slab through the spine, levels and fractures marked.

Made from what the models saw (``ModelInput.tensor``: isotropic model grid, axis0 Superior,
axis1 Posterior, axis2 Left, HU windowed to [0, 1]), so it shows exactly the anatomy that was
graded. A flat mid-sagittal plane misses a scoliotic spine, so the slab follows the spine:
for every axial slice its left-right centre is interpolated between the vertebral centroids,
and a maximum intensity projection over a slab of ``2 * half_width_mm`` around that centre
makes one row of the image. Displayed as radiologists read a sagittal: superior at the top,
anterior on the left; one image pixel keeps the physical aspect of the grid.

The geometry (:func:`spine_midline`, :func:`sagittal_view`, :func:`label_positions`,
:func:`spread_labels`) is plain numpy; :func:`render_key_image` draws with matplotlib's Agg
canvas (no display, no pyplot state), so it is safe in a worker thread.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.logs import study_ref
from engine.preprocess import ModelInput, lps_to_model
from engine.results import ScreeningResult

GRADE_COLOURS = {0: "#d8d8d8", 1: "#ffd400", 2: "#ff8c00", 3: "#ff2a1a"}
"""Label colour per Genant grade: grey (normal), yellow, orange, red."""
GRADE_NAMES = {1: "mild", 2: "moderate", 3: "severe"}
WARNING_COLOUR = "#8fd3ff"
"""Colour of the line saying the level names are in doubt (no grade's colour)."""
FOOTER = "vcfscreen research prototype, synthetic-data models, not for diagnosis"

DPI = 100
TARGET_HEIGHT_PX = 1000
"""Height the image part aims at; the scale stays between MIN_SCALE and MAX_SCALE px/mm."""
MIN_SCALE, MAX_SCALE = 1.2, 5.0
MARGIN_LEFT_PX, MARGIN_RIGHT_PX = 170, 30
MARGIN_TOP_PX, MARGIN_BOTTOM_PX = 106, 54
MIN_WIDTH_PX = 620
FONT_PT = 11
TISSUE_LEVEL = 0.05
"""Tensor value above which a voxel is body tissue (about -130 HU with the default window)."""
MAX_SPINE_OFFSET_MM = 60.0
"""Farthest a vertebral centroid may lie from the trunk's left-right centre to steer the slab."""
SLAB_HALF_WIDTH_MM = 9.0
"""Half the left-right thickness of the slab (a vertebral body is 25-50 mm wide)."""
LABEL_OFFSET_MM = 26.0
"""Labels end this far anterior of the body's centroid (beside its anterior wall)."""
BODY_HALF_DEPTH_MM = 13.0
"""About half the antero-posterior depth of a body: where leader lines stop, circle radius."""
LABEL_GAP_PX = 17
"""Smallest vertical distance between two labels (one line of FONT_PT text)."""


@dataclass(frozen=True)
class SagittalView:
    """The reformatted image and how its pixels relate to the model grid."""

    image: np.ndarray
    """(rows, columns) float32 in [0, 1]: row 0 is the most superior slice, column 0 anterior."""
    top_index: int
    """Model-grid axis0 index shown in row 0 (row r shows axis0 index ``top_index - r``)."""
    spacing_mm: tuple[float, float]
    """Millimetres per image pixel, (vertical, horizontal)."""
    midline: np.ndarray
    """Axis2 (left-right) centre of the slab at every axis0 index of the content."""

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape  # type: ignore[return-value]

    def to_pixel(self, index: np.ndarray) -> np.ndarray:
        """Model-grid indices (..., 3) -> image (row, column), fractional."""
        index = np.asarray(index, dtype=float)
        return np.stack([self.top_index - index[..., 0], index[..., 1]], axis=-1)


@dataclass(frozen=True)
class KeyLabel:
    """Where one vertebra's name goes, and what it says."""

    level: str
    row: float
    column: float
    """Image pixel of the vertebra's centroid."""
    genant_grade: int
    height_loss: float

    @property
    def text(self) -> str:
        if self.genant_grade == 0:
            return self.level
        return f"{self.level}  grade {self.genant_grade}, {self.height_loss * 100:.0f}% loss"


def spine_midline(n_slices: int, centres: np.ndarray, fallback: float | np.ndarray) -> np.ndarray:
    """Axis2 centre of the spine at each axis0 index, from vertebral centroids (model indices).

    Linear between centroids, constant beyond the first and last; ``fallback`` (a value or
    one per slice) when there is no centroid.
    """
    if len(centres) == 0:
        return np.broadcast_to(np.asarray(fallback, dtype=float), (n_slices,)).copy()
    centres = np.asarray(centres, dtype=float)
    order = np.argsort(centres[:, 0])
    return np.interp(np.arange(n_slices), centres[order, 0], centres[order, 2])


def trunk_midline(content: np.ndarray, threshold: float = TISSUE_LEVEL, smooth: int = 9) -> np.ndarray:
    """Axis2 centre of the body's tissue at each axis0 index, smoothed along axis0.

    Where the spine is when no centroid says so: the spine lies near the trunk's left-right
    centre (a scoliosis moves it a few centimetres at most). Slices without tissue take the
    centre of the grid.
    """
    depth, _, width = content.shape
    weights = (content > threshold).sum(axis=1).astype(float)  # (D, W) tissue per column
    totals = weights.sum(axis=1)
    centre = np.full(depth, (width - 1) / 2.0)
    has_tissue = totals > 0
    centre[has_tissue] = (weights[has_tissue] @ np.arange(width)) / totals[has_tissue]
    if smooth > 1 and depth >= smooth:
        kernel = np.ones(smooth) / smooth
        padded = np.pad(centre, smooth // 2, mode="edge")
        centre = np.convolve(padded, kernel, mode="valid")[:depth]
    return centre


def plausible_centres(centres: np.ndarray, trunk: np.ndarray, shape: tuple[int, int, int],
                      max_offset_vox: float) -> np.ndarray:
    """The centroids inside the content and within ``max_offset_vox`` of the trunk's centre.

    A centroid far off the trunk's midline (a mislabelled component at the edge of the field
    of view, say) would swing the slab out of the body and leave the image black.
    """
    centres = np.asarray(centres, dtype=float).reshape(-1, 3)
    if len(centres) == 0:
        return centres
    inside = np.all((centres >= -0.5) & (centres <= np.asarray(shape) - 0.5), axis=1)
    slices = np.clip(np.rint(centres[:, 0]).astype(int), 0, len(trunk) - 1)
    near = np.abs(centres[:, 2] - trunk[slices]) <= max_offset_vox
    return centres[inside & near]


def sagittal_view(
    tensor: np.ndarray,
    spacing_mm: np.ndarray,
    centres: np.ndarray,
    content_shape: tuple[int, int, int] | None = None,
    half_width_mm: float = SLAB_HALF_WIDTH_MM,
) -> SagittalView:
    """Curved sagittal MIP of a canonical model-grid tensor along the spine's midline."""
    if tensor.ndim != 3:
        raise ValueError(f"a key image is made from one volume (D, H, W); got shape {tensor.shape}")
    depth, height, width = (
        min(c, t) for c, t in zip(content_shape or tensor.shape, tensor.shape)
    )
    if min(depth, height, width) < 1:
        raise ValueError(f"the volume has no content to show (content shape {content_shape})")
    content = tensor[:depth, :height, :width]
    trunk = trunk_midline(content)
    kept = plausible_centres(centres, trunk, content.shape, MAX_SPINE_OFFSET_MM / float(spacing_mm[2]))
    midline = np.clip(spine_midline(depth, kept, trunk), 0, width - 1)
    half = max(0, round(half_width_mm / float(spacing_mm[2])))
    offsets = np.arange(-half, half + 1)
    columns = np.clip(np.rint(midline).astype(int)[:, None] + offsets[None, :], 0, width - 1)
    slab = np.take_along_axis(content, columns[:, None, :], axis=2)  # (D, H, 2*half+1)
    image = slab.max(axis=2)[::-1].astype(np.float32)  # superior row first
    return SagittalView(
        image=image,
        top_index=depth - 1,
        spacing_mm=(float(spacing_mm[0]), float(spacing_mm[1])),
        midline=midline,
    )


def model_centres(result: ScreeningResult, model_input: ModelInput) -> np.ndarray:
    """The result's vertebral centroids (LPS mm) as model-grid indices, (N, 3)."""
    if not result.vertebrae:
        return np.zeros((0, 3))
    lps = np.array([v.centroid_lps_mm for v in result.vertebrae], dtype=float)
    return lps_to_model(model_input, lps)


def label_positions(result: ScreeningResult, model_input: ModelInput, view: SagittalView) -> list[KeyLabel]:
    """One label per vertebra of the result, at its centroid's image pixel, cranial first."""
    pixels = view.to_pixel(model_centres(result, model_input))
    labels = [
        KeyLabel(v.level, float(p[0]), float(p[1]), v.genant_grade, v.height_loss)
        for v, p in zip(result.vertebrae, pixels)
    ]
    return sorted(labels, key=lambda label: label.row)


def spread_labels(positions: np.ndarray, min_gap: float, low: float, high: float) -> np.ndarray:
    """Move sorted label positions apart to ``min_gap`` at least, staying in [low, high].

    Downward pass then upward pass; positions already far enough apart do not move.
    """
    placed = np.asarray(positions, dtype=float).copy()
    if len(placed) == 0:
        return placed
    placed[0] = max(placed[0], low)
    for i in range(1, len(placed)):
        placed[i] = max(placed[i], placed[i - 1] + min_gap)
    placed[-1] = min(placed[-1], high)
    for i in range(len(placed) - 2, -1, -1):
        placed[i] = min(placed[i], placed[i + 1] - min_gap)
    return placed


def key_image_scale(view: SagittalView) -> float:
    """Pixels per millimetre of the rendered image."""
    height_mm = view.shape[0] * view.spacing_mm[0]
    return float(np.clip(TARGET_HEIGHT_PX / max(height_mm, 1e-6), MIN_SCALE, MAX_SCALE))


def key_image_size(view: SagittalView) -> tuple[int, int]:
    """(width, height) in pixels of the PNG :func:`render_key_image` writes for ``view``."""
    scale = key_image_scale(view)
    image_w = round(view.shape[1] * view.spacing_mm[1] * scale)
    image_h = round(view.shape[0] * view.spacing_mm[0] * scale)
    width = max(MIN_WIDTH_PX, image_w + MARGIN_LEFT_PX + MARGIN_RIGHT_PX)
    return width, image_h + MARGIN_TOP_PX + MARGIN_BOTTOM_PX


def render_key_image(result: ScreeningResult, model_input: ModelInput, path: Path) -> Path:
    """Draw the key image of an ``ok`` result and write it as PNG (atomically) at ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if result.status != "ok":
        raise ValueError(f"a key image is drawn for ok results only; this one is {result.status!r}")
    spacing = model_input.spacing
    view = sagittal_view(model_input.tensor, spacing, model_centres(result, model_input),
                         model_input.content_shape)
    labels = label_positions(result, model_input, view)
    width, height = key_image_size(view)
    scale = key_image_scale(view)
    rows, cols = view.shape
    row_mm, col_mm = view.spacing_mm
    image_w, image_h = cols * col_mm * scale, rows * row_mm * scale

    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="black")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((MARGIN_LEFT_PX / width, MARGIN_BOTTOM_PX / height, image_w / width, image_h / height))
    ax.imshow(view.image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="bilinear",
              extent=(0.0, cols * col_mm, rows * row_mm, 0.0), aspect="equal")
    ax.set_xlim(0.0, cols * col_mm)
    ax.set_ylim(rows * row_mm, 0.0)
    ax.set_axis_off()
    for letter, x, align in (("A", 0.01, "left"), ("P", 0.99, "right")):
        ax.text(x, 0.995, letter, transform=ax.transAxes, ha=align, va="top", color="#8fd3ff",
                fontsize=FONT_PT, fontweight="bold")

    _draw_labels(ax, labels, view, scale)
    _draw_header(fig, result, width, height)
    fig.text(0.5, 30 / height, f"curved sagittal MIP, {2 * SLAB_HALF_WIDTH_MM:.0f} mm slab following "
             "the spine; anterior left, superior up", ha="center", va="bottom", color="#999999",
             fontsize=FONT_PT - 2)
    fig.text(0.5, 10 / height, FOOTER, ha="center", va="bottom", color="#bbbbbb",
             fontsize=FONT_PT - 1, style="italic")

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor=fig.get_facecolor())
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(buffer.getvalue())
    os.replace(partial, path)
    return path


def _draw_labels(ax, labels: list[KeyLabel], view: SagittalView, scale: float) -> None:
    """Level names just anterior to each body (in mm data coordinates), fractures circled."""
    from matplotlib.patches import Circle

    rows, _ = view.shape
    row_mm, col_mm = view.spacing_mm
    gap_mm = LABEL_GAP_PX / scale
    text_y = spread_labels(np.array([lb.row * row_mm for lb in labels]), gap_mm,
                           gap_mm / 2, rows * row_mm - gap_mm / 2)
    for label, y in zip(labels, text_y):
        colour = GRADE_COLOURS[label.genant_grade]
        body_x, body_y = label.column * col_mm, label.row * row_mm
        text_x = body_x - LABEL_OFFSET_MM
        ax.text(text_x, y, label.text, ha="right", va="center", color=colour, fontsize=FONT_PT,
                fontweight="bold" if label.genant_grade else "normal", clip_on=False,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "black", "edgecolor": "none", "alpha": 0.55})
        ax.plot([text_x + 2.0 / scale, body_x - BODY_HALF_DEPTH_MM], [y, body_y], color=colour,
                linewidth=1.0, alpha=0.8, clip_on=False)
        if label.genant_grade:
            ax.add_patch(Circle((body_x, body_y), BODY_HALF_DEPTH_MM + 2.0, fill=False,
                                edgecolor=colour, linewidth=2.0))


def naming_warning(result: ScreeningResult) -> str | None:
    """The key image's line about level names in doubt, and bodies left unnamed (None when
    neither)."""
    naming = result.level_naming
    if naming is None:
        return None
    parts = []
    if naming.in_doubt:
        parts.append("level names may be one off: another reading of the anatomy fits nearly as well"
                     if naming.doubt == "close call" else
                     "level names may be one off: the rib count is not verified, names assume 12 rib pairs")
    if naming.unnamed_bodies:
        count = naming.unnamed_bodies
        parts.append(f"{count} vertebral bod{'y' if count == 1 else 'ies'} found but not named: not graded")
    return "; ".join(parts) or None


def _draw_header(fig, result: ScreeningResult, width: int, height: int) -> None:
    """Title (flag, maximum grade), study line, the colour legend and, when the level names
    are in doubt, a line saying so, top left."""
    flag = "FLAGGED" if result.flag else "not flagged"
    fig.text(12 / width, 1 - 10 / height, f"vcfscreen  {flag}  max Genant grade {result.max_genant_grade}",
             ha="left", va="top", color=GRADE_COLOURS[3] if result.flag else "white",
             fontsize=FONT_PT + 4, fontweight="bold")
    fractured = sum(1 for v in result.vertebrae if v.genant_grade >= 1)
    fig.text(12 / width, 1 - 38 / height,
             f"{study_ref(result.study_instance_uid)}   {len(result.vertebrae)} vertebrae, "
             f"{fractured} with a deformity (grade, height loss)",
             ha="left", va="top", color="#bbbbbb", fontsize=FONT_PT - 1)
    renderer = fig.canvas.get_renderer()
    x_px = 12.0
    for grade in (1, 2, 3):
        text = fig.text(x_px / width, 1 - 60 / height, f"grade {grade} {GRADE_NAMES[grade]}",
                        ha="left", va="top", color=GRADE_COLOURS[grade], fontsize=FONT_PT - 1,
                        fontweight="bold")
        x_px += text.get_window_extent(renderer=renderer).width + 16.0
    warning = naming_warning(result)
    if warning:
        fig.text(12 / width, 1 - 82 / height, warning, ha="left", va="top", color=WARNING_COLOUR,
                 fontsize=FONT_PT - 1)


def key_image_path(folder: Path, result: ScreeningResult) -> Path:
    """``folder/<StudyInstanceUID>.png``."""
    return folder / f"{result.study_instance_uid}.png"
