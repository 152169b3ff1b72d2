"""Synthetic thoraco-abdomino-pelvic CT studies with exact vertebral truth.

No public CT data is reachable from this project, so training, benchmarks, the demo and
the tests run on studies made here: a curved spine with graded compression fractures and
confounders, the trunk around it in Hounsfield units, scanner noise and blur, written as
real multi-series DICOM with ``truth.json`` and a vertebral-body label volume.

    study = generate_study(seed=7, config=PhantomConfig.fast())
    write_study(study, "out/", transfer_syntax="jpegls")
"""

from engine.phantom.config import PhantomConfig, PlantedFracture
from engine.phantom.study import PhantomStudy, generate_study, write_study

__all__ = ["PhantomConfig", "PhantomStudy", "PlantedFracture", "generate_study", "write_study"]
