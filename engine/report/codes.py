"""Coded concepts of vcfscreen's DICOM SR, and the private coding scheme ``99VCF``.

Standard codes are used wherever the DICOM standard's code tables (as shipped with pydicom)
hold one: SNOMED CT for the vertebrae C1..L5, the sacrum and computed tomography; DCM for
report structure; UCUM for units. The rest is coded in ``99VCF``, a private scheme (the
``99`` prefix is DICOM's convention for local schemes, PS3.16 section 8.2), declared in
every SR's Coding Scheme Identification Sequence. Its codes, all version 1.0:

=============  =====================================================
code           meaning
=============  =====================================================
``GENANT``     Genant semi-quantitative fracture grade (concept name)
``GENANT0``    Genant grade 0, normal (height loss < 20%)
``GENANT1``    Genant grade 1, mild (20-25%)
``GENANT2``    Genant grade 2, moderate (25-40%)
``GENANT3``    Genant grade 3, severe (> 40%)
``HLOSS``      Vertebral body height loss (percent of the expected height)
``HANT``       Anterior vertebral body height
``HMID``       Middle vertebral body height
``HPOST``      Posterior vertebral body height
``HEXP``       Expected vertebral body height (intact)
``PFX``        Vertebral compression fracture probability
``MORPH``      Fracture morphology (concept name)
``WEDGE``      Wedge deformity (anterior height loss)
``BICONCAVE``  Biconcave deformity (middle height loss)
``CRUSH``      Crush deformity (loss of the whole body)
``T13``        Thirteenth thoracic vertebra (variant)
``L6``         Sixth lumbar vertebra (variant)
``S1``         First sacral vertebra
=============  =====================================================

Changing the meaning of a code is a breaking change for every reader of stored SRs: add
codes, never reuse them.
"""

from __future__ import annotations

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

VCF_SCHEME = "99VCF"
VCF_SCHEME_VERSION = "1.0"


def vcf_code(value: str, meaning: str) -> CodedConcept:
    """A concept of the private ``99VCF`` scheme."""
    return CodedConcept(value=value, scheme_designator=VCF_SCHEME, meaning=meaning,
                        scheme_version=VCF_SCHEME_VERSION)


def coding_scheme_item() -> CodingSchemeIdentificationItem:
    """The declaration of ``99VCF`` that goes into each SR's header."""
    return CodingSchemeIdentificationItem(
        designator=VCF_SCHEME,
        name="vcfscreen vertebral compression fracture screening codes",
        version=VCF_SCHEME_VERSION,
        responsible_organization="vcfscreen open-source project",
    )


GENANT_GRADE = vcf_code("GENANT", "Genant semi-quantitative fracture grade")
GENANT_GRADES: dict[int, CodedConcept] = {
    0: vcf_code("GENANT0", "Genant grade 0, normal"),
    1: vcf_code("GENANT1", "Genant grade 1, mild"),
    2: vcf_code("GENANT2", "Genant grade 2, moderate"),
    3: vcf_code("GENANT3", "Genant grade 3, severe"),
}
HEIGHT_LOSS = vcf_code("HLOSS", "Vertebral body height loss")
ANTERIOR_HEIGHT = vcf_code("HANT", "Anterior vertebral body height")
MIDDLE_HEIGHT = vcf_code("HMID", "Middle vertebral body height")
POSTERIOR_HEIGHT = vcf_code("HPOST", "Posterior vertebral body height")
EXPECTED_HEIGHT = vcf_code("HEXP", "Expected vertebral body height")
FRACTURE_PROBABILITY = vcf_code("PFX", "Vertebral compression fracture probability")
MORPHOLOGY = vcf_code("MORPH", "Fracture morphology")
LEVEL_IDENTIFICATION = vcf_code("LEVELID", "Vertebral level identification")
LEVEL_MAY_BE_ONE_OFF = vcf_code("LEVELDOUBT", "Level name may be one off")
MORPHOLOGIES: dict[str, CodedConcept] = {
    "wedge": vcf_code("WEDGE", "Wedge deformity"),
    "biconcave": vcf_code("BICONCAVE", "Biconcave deformity"),
    "crush": vcf_code("CRUSH", "Crush deformity"),
}

PERCENT = codes.UCUM.Percent
MILLIMETRE = codes.UCUM.Millimeter
RATIO = codes.UCUM.Ratio

COMPUTED_TOMOGRAPHY = codes.SCT.ComputedTomography
"""The procedure reported (SNOMED CT 77477000). The DICOM code tables shipped with pydicom
hold no single code for "CT of chest, abdomen and pelvis"; the SR's series description
names the TAP screening instead."""

_PRIVATE_LEVELS = {
    "T13": vcf_code("T13", "Thirteenth thoracic vertebra"),
    "L6": vcf_code("L6", "Sixth lumbar vertebra"),
    "S1": vcf_code("S1", "First sacral vertebra"),
}


def vertebra_code(level: str) -> Code | CodedConcept:
    """The anatomic code of a level: SNOMED CT (``codes.SCT.T12Vertebra``...) or ``99VCF``."""
    if level in _PRIVATE_LEVELS:
        return _PRIVATE_LEVELS[level]
    code = getattr(codes.SCT, f"{level}Vertebra", None)
    if code is None:
        raise ValueError(f"no anatomic code for the vertebral level {level!r}")
    return code
