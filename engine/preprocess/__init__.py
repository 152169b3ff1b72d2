"""Preprocessing of CT volumes for the models, with NVIDIA DALI.

Reorient to the canonical orientation (axis0 Superior, axis1 Posterior, axis2 Left),
resample to the model spacing, window the HU values to [0, 1] and pad to the model grid;
each result carries the affine that maps its voxels back to LPS millimetres.

The geometry is plain math (:mod:`.orientation`, :mod:`.plan`); the voxels move in one DALI
pipeline (:mod:`.pipeline`) held by a :class:`Preprocessor`; :mod:`.reference` does the same
in scipy for testing.
"""

from engine.preprocess.orientation import Reorientation, axis_obliquity_deg, reorientation
from engine.preprocess.plan import SamplePlan, plan_sample
from engine.preprocess.preprocessor import (
    ModelInput,
    Preprocessor,
    lps_to_model,
    model_to_lps,
    preprocess,
)

__all__ = [
    "ModelInput",
    "Preprocessor",
    "Reorientation",
    "SamplePlan",
    "axis_obliquity_deg",
    "lps_to_model",
    "model_to_lps",
    "plan_sample",
    "preprocess",
    "reorientation",
]
