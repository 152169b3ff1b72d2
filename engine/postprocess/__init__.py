"""Post-processing: vertebral-body heights, Genant grade, fusion with the classifier.

Plain typed functions (numpy, no torch) so they can be tested on synthetic masks and called
from the CLI, the streaming worker or a Triton Python backend alike.
"""

from engine.postprocess.findings import VertebraInput, findings_from_vertebrae
from engine.postprocess.fusion import ClassifierOutput, FusedGrade, fuse
from engine.postprocess.grading import Deformity, Heights, genant_grade, grade_spine
from engine.postprocess.morphometry import (
    BodyMeasurement,
    MeasurementError,
    anterior_direction,
    measure_body,
    spine_axes,
)

__all__ = [
    "BodyMeasurement",
    "ClassifierOutput",
    "Deformity",
    "FusedGrade",
    "Heights",
    "MeasurementError",
    "VertebraInput",
    "anterior_direction",
    "findings_from_vertebrae",
    "fuse",
    "genant_grade",
    "grade_spine",
    "measure_body",
    "spine_axes",
]
