"""Which planted confounder a false-positive fracture call falls on.

Outside checks always ask what fooled a screening tool (in the cancer-centre study behind a
commercial tool: sclerotic metastases, scoliosis, misidentified vertebrae). A false positive
is a vertebra graded a fracture (grade >= 2) whose true grade is 0, or a prediction that
identifies no true vertebra. It is attributed to every confounder planted at its level (for
a prediction without a true vertebra: the nearest true vertebra's level and its own name);
failing that, to the confounders that concern the whole study (a hip prosthesis, partial
coverage); failing that, to :data:`NO_CONFOUNDER`. A prediction lying on a body cut by the
edge of the field of view is attributed to :data:`PARTIAL_COVERAGE` as well.

Confounder types are taken verbatim from truth.json, so a new kind of confounder in the
phantom is counted without a change here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from engine.evaluate.truth import Confounder

NO_CONFOUNDER = "none"
PARTIAL_COVERAGE = "partial_coverage"


def confounders_at(level: str | None, confounders: Sequence[Confounder]) -> list[str]:
    """Types of the confounders planted at ``level`` (in truth.json order, no repeats)."""
    if level is None:
        return []
    return list(dict.fromkeys(c.type for c in confounders if level in c.levels))


def attribute(level: str | None, confounders: Sequence[Confounder], on_partial_body: bool = False) -> list[str]:
    """The confounder types one false positive at ``level`` is attributed to (never empty)."""
    types = confounders_at(level, confounders)
    if on_partial_body and PARTIAL_COVERAGE not in types:
        types.append(PARTIAL_COVERAGE)
    if not types:
        types = list(dict.fromkeys(c.type for c in confounders if not c.levels))
    return types or [NO_CONFOUNDER]


def attribute_unmatched(
    nearest_level: str | None, predicted_level: str, confounders: Sequence[Confounder], on_partial_body: bool
) -> list[str]:
    """Attribution of a fracture call that identifies no true vertebra: the confounders at the
    nearest true vertebra's level and at the level the prediction was named (a body cut by
    the field of view has no truth record, but partial coverage lists its level)."""
    types = confounders_at(nearest_level, confounders)
    types += [t for t in confounders_at(predicted_level, confounders) if t not in types]
    if types:
        if on_partial_body and PARTIAL_COVERAGE not in types:
            types.append(PARTIAL_COVERAGE)
        return types
    return attribute(nearest_level, confounders, on_partial_body)


def count_by_type(attributions: Iterable[Sequence[str]]) -> dict[str, int]:
    """False positives per confounder type, largest first; one false positive attributed to
    two confounders counts once for each, so the counts may add up to more than the total."""
    counts: Counter[str] = Counter()
    for types in attributions:
        counts.update(set(types))
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
