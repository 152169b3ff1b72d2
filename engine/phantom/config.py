"""The knobs of the phantom generator.

One :class:`PhantomConfig` describes a *population* of studies: every study drawn with it
samples its patient, anatomy, pathology and acquisition from these ranges and
probabilities, so the same config and seed always give the same study. The defaults
describe clinical thoraco-abdomino-pelvic CTs (512 matrix, 200-600 slices);
:meth:`PhantomConfig.fast` gives small studies for tests and model training.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Morphology = Literal["wedge", "biconcave", "crush"]
TransitionalVariant = Literal["13_thoracic", "11_thoracic", "6_lumbar", "sacralised_L5"]


class PlantedFracture(BaseModel):
    """A fracture planted on purpose (instead of sampled) at a named level."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: str
    """Level name as in truth.json, e.g. ``T12`` or ``L1``."""
    morphology: Morphology = "wedge"
    """Where the height is lost: anterior (wedge), middle (biconcave) or all heights (crush)."""
    grade: int = Field(default=2, ge=1, le=3)
    """Genant grade 1-3; the height loss is drawn inside the grade's range."""
    height_loss: float | None = Field(default=None, gt=0.2, le=0.6)
    """Exact height loss instead of a drawn one; must fall in the grade's Genant range."""

    @model_validator(mode="after")
    def _loss_matches_grade(self) -> PlantedFracture:
        if self.height_loss is not None:
            low, high = {1: (0.20, 0.25), 2: (0.25, 0.40), 3: (0.40, 0.60)}[self.grade]
            if not low <= self.height_loss < high + (1e-9 if self.grade == 3 else 0.0):
                raise ValueError(f"height_loss {self.height_loss} is not a grade {self.grade} loss ({low}-{high})")
        return self


class PhantomConfig(BaseModel):
    """Ranges and probabilities from which each phantom study is drawn."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    # --- acquisition -------------------------------------------------------------------
    matrix: int = Field(default=512, ge=48, le=1024)
    """Rows and columns of the axial images; 128 gives small, fast studies."""
    fov_range_mm: tuple[float, float] = (307.0, 461.0)
    """Reconstruction diameter range; the body's width picks a value inside it
    (307-461 mm is 0.6-0.9 mm pixels on a 512 matrix)."""
    slices_min: int = Field(default=200, ge=8)
    """Fewest slices of the screening series."""
    slices_max: int = Field(default=600, ge=8)
    """Most slices of the screening series; thin slices that cannot cover the trunk
    within this count give a partial-coverage study."""
    spacing_choices_mm: tuple[float, ...] = (0.625, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
    """Slice spacings to choose from (the thickness equals the spacing or overlaps it)."""
    feet_first_probability: float = Field(default=0.2, ge=0, le=1)
    """Share of feet-first supine (FFS) studies; the rest are head-first (HFS)."""
    signed_pixels_probability: float = Field(default=0.5, ge=0, le=1)
    """Share of studies stored with signed pixels (PixelRepresentation 1)."""
    noise_scale: float = Field(default=1.0, ge=0, le=5)
    """Multiplier of the kernel's image noise (0 gives noiseless images)."""
    position: Literal["HFS", "FFS"] | None = None
    """Force the patient position instead of drawing it."""
    partial_volume_slices: bool = False
    """Paint the study on slices at most ``PARTIAL_VOLUME_STEP_MM`` apart, apply the slice
    profile there, and keep the slices of the acquisition: each slice then averages the anatomy
    over its thickness, as a scanner's does. Off (the default), every slice is painted at its
    centre and only then blurred by the profile, on the slice grid itself: at 2.5-3 mm that
    blur spans a fraction of a slice, so thick slices come out sharper through the plane than a
    scanner's (thin ribs, endplates). The shipped segmenter and classifier were trained with it
    off, and the model card's figures measured so unless they say otherwise; the top-vertebrae
    cue (``vcfscreen train-levels``) learns from both renderings. Costs up to six times the
    painting time (3 mm slices)."""

    # --- fractures ---------------------------------------------------------------------
    fracture_study_probability: float = Field(default=0.45, ge=0, le=1)
    """Share of studies with at least one vertebral compression fracture."""
    max_fractures: int = Field(default=4, ge=1, le=10)
    """Most fractures sampled in one study."""
    grade_weights: tuple[float, float, float] = (0.3, 0.4, 0.3)
    """Relative frequency of Genant grades 1, 2 and 3 among sampled fractures."""
    morphology_weights: tuple[float, float, float] = (0.55, 0.25, 0.2)
    """Relative frequency of wedge, biconcave and crush deformities."""
    osteoporosis_without_fracture_probability: float = Field(default=0.25, ge=0, le=1)
    """Share of fracture-free patients that are still osteoporotic (low density is not a label)."""
    fractures: tuple[PlantedFracture, ...] = ()
    """Plant exactly these fractures instead of sampling them (tests, demos)."""

    # --- confounders -------------------------------------------------------------------
    sclerotic_metastasis_probability: float = Field(default=0.08, ge=0, le=1)
    """Dense (~800+ HU) metastases in one to three vertebral bodies."""
    lytic_metastasis_probability: float = Field(default=0.08, ge=0, le=1)
    """Low-density holes replacing cancellous bone in one to three bodies."""
    scoliosis_probability: float = Field(default=0.12, ge=0, le=1)
    """Lateral curvature (Cobb 10-40 degrees) with vertebral rotation."""
    schmorl_probability: float = Field(default=0.2, ge=0, le=1)
    """Schmorl's nodes: small endplate notches that are not fractures."""
    degenerative_probability: float = Field(default=0.3, ge=0, le=1)
    """Disc degeneration: narrowed discs with gas, endplate sclerosis, osteophytes."""
    transitional_probability: float = Field(default=0.12, ge=0, le=1)
    """11 or 13 rib-bearing thoracic vertebrae, six lumbar vertebrae or a sacralised L5."""
    transitional: TransitionalVariant | Literal["none"] | None = None
    """Force one transitional variant (or ``none``) instead of drawing it."""
    partial_coverage_probability: float = Field(default=0.1, ge=0, le=1)
    """Field of view starting mid-thorax or stopping above the sacrum."""
    metal_probability: float = Field(default=0.06, ge=0, le=1)
    """A hip prosthesis or pedicle screws with streak artefacts."""
    fov_levels: tuple[str, str] | None = None
    """Restrict the field of view so that these levels (top, bottom) are fully visible,
    with half of each neighbour; for fast tests of a region."""

    # --- extra, non-eligible series -----------------------------------------------------
    scout_probability: float = Field(default=0.8, ge=0, le=1)
    """A scout (localizer) series of one or two projection images."""
    thick_series_probability: float = Field(default=0.5, ge=0, le=1)
    """A 5 mm axial reconstruction of the same acquisition."""
    sagittal_series_probability: float = Field(default=0.4, ge=0, le=1)
    """A sagittal reformat (DERIVED\\SECONDARY) through the spine."""

    @model_validator(mode="after")
    def _consistent(self) -> PhantomConfig:
        if self.slices_min > self.slices_max:
            raise ValueError(f"slices_min {self.slices_min} exceeds slices_max {self.slices_max}")
        low, high = self.fov_range_mm
        if not 100.0 <= low <= high <= 700.0:
            raise ValueError(f"fov_range_mm {self.fov_range_mm} must be increasing, within 100-700 mm")
        if not self.spacing_choices_mm or min(self.spacing_choices_mm) <= 0:
            raise ValueError(f"spacing_choices_mm {self.spacing_choices_mm} must be positive values")
        for name in ("grade_weights", "morphology_weights"):
            weights = getattr(self, name)
            if min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(f"{name} {weights} must be non-negative with a positive sum")
        return self

    @classmethod
    def fast(cls, **overrides: object) -> PhantomConfig:
        """Small studies (128 matrix, 2.5-3 mm slices, ~220 slices) for tests and training.

        Still a whole trunk with every structure; only the grid is coarser. Keyword
        arguments override any field.
        """
        values: dict[str, object] = {
            "matrix": 128,
            "slices_min": 120,
            "slices_max": 300,
            "spacing_choices_mm": (2.5, 3.0),
        }
        values.update(overrides)
        return cls(**values)
