"""DICOM study loading: from a folder or DICOMweb instances to one HU volume with geometry.

The public API (stable; the CLI, the streaming worker and the benchmarks call it):

- :func:`scan_folder` -- headers of every DICOM instance under a folder, pixels untouched;
- :func:`headers_from_datasets` -- the same for in-memory datasets;
- :func:`group_series` -- headers grouped into :class:`Series`;
- :func:`select_series` -- the series fit for screening, and a :class:`SeriesDecision` each;
- :func:`load_study` -- all of the above plus decoding, as a :class:`LoadedStudy`.

Modules: ``headers`` (cheap header reading), ``values`` (defensive value parsing),
``multiframe`` (enhanced CT functional groups), ``geometry`` (plain slice-stack math),
``stack`` (ordering and checks of one series), ``series`` (grouping and selection),
``decode`` (pixels to HU), ``assemble`` (the volume), ``study`` (the entry point).
"""

from engine.dicom.headers import InstanceHeader, headers_from_datasets, scan_folder
from engine.dicom.series import (
    Series,
    SeriesDecision,
    group_series,
    kernel_class,
    select_series,
)
from engine.dicom.stack import StackPlan, plan_stack
from engine.dicom.study import LoadedStudy, load_study
from engine.dicom.values import FrameHeader

__all__ = [
    "FrameHeader",
    "InstanceHeader",
    "LoadedStudy",
    "Series",
    "SeriesDecision",
    "StackPlan",
    "group_series",
    "headers_from_datasets",
    "kernel_class",
    "load_study",
    "plan_stack",
    "scan_folder",
    "select_series",
]
