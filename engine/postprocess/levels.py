"""Vertebral level labelling from the segmentation's class map.

Input: a class map on the canonical model grid (axis0 to Superior, axis1 to Posterior,
axis2 to Left; classes of :data:`engine.models.contract.SEG_CLASSES`: background, vertebral
body, intervertebral disc, sacrum, rib head), optionally with the body probability. Output:
one :class:`LabelledVertebra` per vertebral body, named C1..C7, T1..T13, L1..L6 or S1.

How bodies are found, and why: the segmentation's body components are not vertebrae. Where a
disc is under-segmented, neighbouring bodies join into one component (a run of upper thoracic
bodies often becomes a single 150 mm component); where a body is weakly segmented it breaks
into fragments or vanishes; and every such error shifts the count of all levels below it.
So the bodies are found along the **spine column** instead:

1. a centre line is fitted through the body and sacrum voxels (robust to off-spine specks:
   running medians per axial row), and a tube around it keeps only the column;
2. every column voxel gets an arc-length coordinate ``s`` along the centre line (projection
   on the local tangent, so tilted lumbosacral discs are cut along their own plane);
3. the column's profile along ``s`` (body cross-section, minus disc) dips at each disc; the
   local vertebral pitch is measured from the clear dips, and from the weak ones (below)
   that lie between two clear ones;
4. dynamic programming cuts the column into vertebrae: cuts in dips, segment lengths close
   to the local pitch, and a price for every disc left uncut, the clear ones and the weak
   ones (a shallow dip where the mask runs across a thin disc, as between two crushed
   neighbours). Two touching bodies are cut apart at their shallow dip (or at the
   expected height when there is none), and a body the segmentation missed becomes a
   segment of about one pitch with little body inside: it is **counted** (so the levels
   below it stay right) but not reported, as there is nothing to measure.
5. the cutting has near-ties (hard thresholds on the binned profile: clear discs, weak-disc
   depths, the too-short bar), so it is done at :data:`CUT_PHASES` sub-bin phases of the bins
   and the cutting that agrees best with the others is kept. Shifting the centre line's arc
   length by 0.17, 0.5 or 0.83 mm and nothing else changed the names or bodies of 21 of 400
   development and test phantoms with one cutting, of 11 with three; on 100 held-out ones, of
   3 and 1. The names found did not fall, and the labelling takes about 10 ms longer (0.245 s
   at the median).

How levels are named, and why: the network finds bodies but does not name them (per-level
classes fail by whole-level shifts). Names come from counting between two anchors that a TAP
CT nearly always holds:

* the **ribs**, found in the image rather than by the network: a rib's neck and tubercle lie
  in a band behind and beside its vertebra (:data:`RIB_NECK_ZONE_MM`) where a lumbar vertebra
  has no bone (its transverse processes lie further forward, the kidneys further out). Each
  body gets a rib evidence (log-likelihood ratio) from the bone in that band on its weaker
  side. The segmentation's rib-head class, which missed short floating ribs and marked
  lumbar transverse processes, is used only when no image is given.
* the **sacrum**: the body above it is the last lumbar vertebra. S1 is the top segment of the
  sacrum. Sacrum class with a vertebral body below it is not the sacrum
  (:data:`BENEATH_SACRUM_MM3`), and the column is named without it.

Every naming the anatomy allows is scored: the typical spine (12 thoracic, 5 lumbar) and the
common transitional variants (11 or 13 rib pairs, six lumbar vertebrae), each with its prior,
placed so the last body is the last lumbar vertebra (with the sacrum) or anywhere (without
it), plus the rib evidence of every body the naming calls thoracic. The best naming wins; a
rival within :data:`UNCERTAIN_MARGIN` is reported in the notes, and so are bodies whose ribs
disagree with their names, and a rib count that only the prior chose (the top of the thoracic
spine out of view or cut: 11 or 13 rib pairs would fit as well, and shift every thoracic
name). A close call at the top of the column is looked at once more: T1's first rib rises to
the C7/T1 disc, and the part above the segment boundary counts in C7's first-rib band, so C7
can read as a thirteenth rib-bearing vertebra. Where the topmost rib neck lies along the
column says which body bears the first rib (:func:`first_rib_owner`); first-rib band bone
beside a body above it is read as that rib rising, and the column is named again (replayed
on 200 development phantoms, this renamed 5 studies, all correctly, and no other; the names
stay reported uncertain). Without the sacrum, where a tie would leave the column unnamed (its
fractures unreported), the neck is looked at in the same way.

Where the ribs and the prior choose between rib counts the image cannot tell apart (11 or 13
pairs with the top of the thoracic spine cut or out of view), the top whole vertebrae are
read for which of them is T1, C7 or T2 (:mod:`.top_levels`: the first rib, the clavicles and
the manubrium around T1, learned on phantoms). With the sacrum in view, each naming takes in
that cue for the names it gives the top bodies, and one the cue prefers replaces the ribs'
choice when it wins by :data:`~.top_levels.OVERRIDE_MARGIN`; such names are reported in
doubt, and the first rib's neck is not asked again. Where the cue instead confirms the usual 12
pairs against each count the ribs tie with it, by :data:`~.top_levels.COUNT_MARGIN` or more,
the count is read from the image (:func:`count_read_at_top`) and the names are not in doubt.

One rib-like process beside a lumbar body cannot move the thoracolumbar junction (the
prior and the neighbours outweigh it), and a missed or extra body in the column shifts only
the levels above it when the sacrum is in view.

A lumbar body the column lost is the one exception the ribs can show. A grade 3 L1 that the
mask runs into both neighbours across thin discs can be cut away, half to each (the pitch
read from clear lumbar discs spans the shortened stretch with one body too few); the body
above then bears ribs but is named L1, and every name above it is one level off. With the
sacrum in view, one more reading of the typical anatomy leaves L1 out of the column, at a
price of :data:`LOST_BODY_NATS`: it wins only when the ribs beside the body named L1 outweigh
that price and the rib evidence the top body loses as its name moves up one (a rib-bearing
T1 read as C7). The names then say so, in doubt. Replayed on 215 phantoms (100 of them unseen
before this rule was written down), it renamed the one study that had lost its L1 this way
(6 of 18 names right before, 17 after) and changed nothing else: no other name, note or
doubt.

An extra body is the converse: a vertebra the column cut in two (a Schmorl's node or a fracture
line read as a disc) adds a level, and with both ends of the spine in view the count reads six
lumbar vertebrae or 13 rib pairs, every name on one side of the cut one off. Nothing in the
ribs shows it, but its two pieces lie about half the usual spacing apart. Once the bodies are
measured, :func:`split_doubt` reports such a pair as a close call (see :data:`SPLIT_RATIO`).

Plain functions on numpy arrays; the only dependency is scipy.ndimage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from scipy import ndimage

from engine.errors import LevelsNotNamedError, NoSpineError, NotEligibleError
from engine.postprocess.top_levels import CLASSES as TOP_CLASSES
from engine.postprocess.top_levels import COUNT_MARGIN, OVERRIDE_MARGIN, TOP_BODIES, TopLevelModel, class_of
from engine.postprocess.top_levels import features as top_features
from engine.results import level_index

BACKGROUND, BODY, DISC, SACRUM, RIB_HEAD = 0, 1, 2, 3, 4
KNOWN_LEVELS = frozenset(
    [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 14)] + [f"L{i}" for i in range(1, 7)] + ["S1"]
)
"""Every level a spine can have, transitional anatomy included (T13, L6)."""

MIN_BODY_MM3 = 1500.0
"""Smaller body segments are not reported (the smallest thoracic body is ~5000 mm3)."""
BENEATH_SACRUM_MM, BENEATH_SACRUM_MM3 = 20.0, 5000.0
"""Sacrum class with this much vertebral body (a small thoracic body's volume) in the column
further than this below its top is not the sacrum, and the column is cut and named without
it. At the scan's lower edge the segmenter can read a collapsed lumbar body, or bone beside
it, as sacrum: taken as the sacrum, the bodies below it were dropped and every name above
was counted from it (study seed 8261935671074030859, number 26 of the seed-4747 evaluate set,
scanned T1 to a grade 3 L2: 0 of 14 names right). Body class counts only below both that depth
and the sacrum's lower end (see :data:`SACRUM_BOTTOM_PERCENTILE`): for a sacrum shorter than this
depth, as that false one was, the rule is as before."""
SACRUM_BOTTOM_PERCENTILE = 2.0
"""The sacrum's lower end along the column: this percentile of its voxels' arc length. Body class
above it lies inside the sacrum's own extent (the segmenter can mark part of the lower sacrum as
body) and is not a vertebra beneath it: counted as one, it took the sacrum away from a study of
seed 2828 (a 7900 mm3 body blob within a sacrum that spanned 84 mm; 17 names wrong)."""
SPECK_MM3 = 200.0
"""Body or sacrum components smaller than this are noise: they do not place the centre line."""
SLAB_MM = 10.0
"""Body components enter the centre line's first fit as slabs this thick along the scan axis."""
TUBE_RADIUS_MM = 32.0
"""Column voxels lie within this distance of the centre line, in the axial plane (the widest
lumbar body is ~50 mm)."""
RIB_REACH_MM = 45.0
"""Rib heads count for a vertebra within this distance of the centre line, in the axial plane."""
S1_SLAB_MM = 25.0
"""S1 is the part of the sacrum within this distance of its superior end."""
MIN_PITCH_MM, MAX_PITCH_MM = 12.0, 40.0
"""Bounds of the vertebral pitch (body + disc): ~16 mm upper thoracic to ~35 mm lumbar."""
DEFAULT_PITCH_MM = 24.0
"""Pitch assumed when the column shows too few clear discs to measure it."""
HYSTERESIS_LOW = 0.25
"""With the body probability: voxels above this join a body connected to argmax body voxels."""
LENGTH_SIGMA = 0.12
"""Spread of a vertebra's segment length above the local pitch (share of the pitch). Where
the segmenter fills a crushed body's collapsed endplates no disc shows, and the pitch there
is extrapolated from discs far away; a looser spread (0.15) then merged the crushed body
into a neighbour (on the development phantoms: 2 of 18 grade >= 2 bodies lost that way)."""
SHORT_SIGMA = 0.25
"""Spread below it: a compressed body is shorter than its neighbours, never longer."""
FILLED_SHORT_SIGMA = 0.35
"""The spread below the pitch of a segment mostly filled with body (at least
:data:`FILLED_SHARE` of its bins with more body than disc): a collapsed body, not an empty
stretch. A severe biconcave collapse (55% of its height lost) spans only 0.6-0.7 of the local
pitch, and the segmenter half fills the discs on either side of it: at 0.25 the cutting
preferred two segments of one pitch each, cut through the collapsed body's middle, to three
short ones at the weak discs, and the body was lost with every name above it (3 of 100
phantoms of one set, 2 of 367 development ones). At 0.35, 3 of those 5 bodies are found (with
9, 11 and 2 names more right) and no other name, lost body or doubt of the 367 changed; on
100 phantoms unseen before (seeds 330000-330099) nothing changed, and its one collapse lost
this way stays lost. An empty stretch keeps :data:`SHORT_SIGMA`: a body the segmentation
missed leaves a clear run one pitch long, counted as one missed body, which the looser spread
would split into two."""
FILLED_SHARE = 0.5
"""Share of a segment's bins that must hold more body than disc for :data:`FILLED_SHORT_SIGMA`."""
UNCUT_GAP_COST = 3.0
"""Cost of a segment that leaves a clear disc inside it uncut."""
CUT_COST_PER_DROP = 6.0
"""A cut's cost per unit of the column profile's drop there (body share less half the disc share)."""
DIP_DEPTH, DIP_REACH_MM = 1.5, 10
"""A weak disc: a local minimum of the cut cost at least this far below the highest cost within
``DIP_REACH_MM`` on each side. Where two crushed neighbours meet, the segmenter runs the body
mask across their thin disc and marks only a trace of it; the pitch carried up from clear
lumbar discs then fits both in one segment (two test phantoms lost a grade 3 body that way,
and every level above it). Leaving a weak disc uncut costs its depth, at most what a clear
disc costs. Measured on 100 development and test phantoms: of the 778 weak discs found between
the first and last true centroids, 774 lay within 5 mm of a true disc and 4 at 6-11 mm (57 more
lay beyond the end centroids, where the truth lists no disc to compare)."""
CUT_PHASES = 3
"""The column is cut this many times, its 1 mm bins starting k / CUT_PHASES of a bin lower
(k = 0, 1, ...), and the cutting that agrees best with the others is kept (see
:func:`agreed_cutting`)."""
CUT_AGREE_MM = 4.0
"""Two cuts this close are the same cut."""
MISSED_FRACTION = 0.2
"""A segment holding less body than this share of its neighbours' is a missed body."""
RIB_BONE_HU = 200.0
"""HU above which a voxel counts as rib bone (rib cortex is far above; enhanced kidneys, which
lie beside L1-L3, can pass it too, so where the bone is matters more than how dense it is)."""
RIB_NECK_ZONE_MM = ((30.0, 55.0), (30.0, 50.0))
"""(lateral, posterior) band, from the centre line in the axial plane, where a rib's neck and
tubercle lie beside its vertebra: behind the body, out to the transverse process. Lumbar
transverse processes lie further forward and the kidneys further out, so a lumbar vertebra
shows almost no bone there (measured on phantoms: T11/T12 >= 376 mm3 a side, L1 <= 144)."""
FIRST_RIB_ZONE_MM = ((30.0, 60.0), (-10.0, 50.0))
"""The first rib leaves T1 steeply forward and down, beside the body rather than behind it:
a wider band, used for the upper thoracic levels (C7's short transverse processes stay
inside 30 mm)."""
FIRST_RIB_NECK_ZONE_MM = ((30.0, 40.0), (-10.0, 50.0))
"""(lateral, posterior) band where a rib's neck leaves its vertebra for the tubercle. The
topmost piece of bone in it is the first rib's neck, and where it lies along the column says
which body bears the first rib (see :func:`first_rib_owner`)."""
RIB_PIECE_MIN_MM3 = 100.0
"""Smaller pieces of bone in the neck band are not a rib's neck."""
NECK_ABOVE_CENTROID_MM = 3.0
"""A rib's neck lies about this far above its vertebra's centroid, along the column: the head
sits on the upper half of the body. Measured on 93 development phantoms: the mean of the two
sides' topmost neck pieces lay 12 mm below to 13 mm above T1's centroid (5-95%: -6 to +10,
median +2), where C7's centroid lies 12-22 mm above T1's. The value was set at 3 from a first
look at part of those phantoms, before that measurement, and the replays were run with it."""
RIB_MIDPOINT_MM3 = 250.0
"""Bone in the rib-neck band (the lesser of the two sides) at which a vertebra is as likely
rib-bearing as not."""
FIRST_RIB_MIDPOINT_MM3 = 120.0
"""The same in the first-rib band."""
TOP_BAND_BODIES, TOP_BAND_MIN_BODIES = 2, 10
"""In a column of at least 10 bodies, the top two the scan does not cut take the stronger of
the two bands' evidence: the first rib leaves T1 steeply forward, and no kidney lies that high;
lower bodies take the rib-neck band's only. A cut body says nothing about its ribs, so it
takes no slot: with a cut C6 and C7 above it, T1 is the third body and still needs the band
whose bone shows its first rib."""
EDGE_ROWS = 1
"""A body reaching within this many rows of the scan's first or last slice touches its edge."""
CUT_EXTENT = 0.95
"""A body touching the scan's edge and shorter than this share of its nearest whole
neighbours is cut by it (measured on development phantoms: cut bodies 0.27-0.93, whole ones
0.94-1.14 for T1, 0.80 for a C7 whose evidence does not matter)."""
CLASS_MAP_RIB_MIDPOINT_MM3 = 150.0
"""Midpoint for the segmentation's rib-head class, used only when no image is given."""
EVIDENCE_SLOPE, EVIDENCE_CAP = 2.0, 4.0
"""Rib evidence (log-likelihood ratio, nats) per doubling of bone volume, and its bound: no
single vertebra outweighs the anatomy prior and its neighbours together."""
ANATOMY = (
    ("12 thoracic, 5 lumbar", 12, 5, 0.88),
    ("13 rib-bearing vertebrae (T13)", 13, 5, 0.04),
    ("11 rib-bearing vertebrae", 11, 5, 0.04),
    ("6 lumbar vertebrae (L6)", 12, 6, 0.04),
)
"""(description, thoracic count, lumbar count, prior): the common transitional variants at
roughly their population share. A sacralised L5 is named L5 like any other."""
LOST_LEVEL = "L1"
LOST_BODY_READING = "12 thoracic, 5 lumbar, L1 not found in the column"
LOST_BODY_NATS = 3.5
"""Price (nats, on top of the typical anatomy's prior) of the reading that leaves
:data:`LOST_LEVEL` out of a column standing on the sacrum: rib-like bone beside the body named
L1 with less evidence than this does not win it; a clear rib (evidence near
:data:`EVIDENCE_CAP`) with nothing lost at the top does."""
CONFLICT_NATS = 2.0
"""A body named thoracic with rib evidence below minus this, or named otherwise with evidence
above it, is counted in the result's note of disagreements."""
TIE_NATS = 0.05
"""Without the sacrum, readings this close are a tie: nothing in view places the column."""
UNCERTAIN_MARGIN = 2.0
"""A naming whose best alternative scores within this many nats is reported as uncertain."""


@dataclass
class LabelledVertebra:
    level: str
    centroid_index: np.ndarray
    """Centroid in model-grid voxel indices (axis0, axis1, axis2)."""
    box: tuple[slice, slice, slice]
    """Bounding box of the body on the model grid."""
    local_mask: np.ndarray = field(repr=False)
    """Boolean mask of the body inside ``box``."""
    grid_shape: tuple[int, int, int] = (0, 0, 0)
    rib_bearing: bool = False
    cut_by_scan: bool = False
    """The scan's first or last slice cuts this body (see :func:`cut_by_scan`): reported, not graded."""

    @property
    def mask(self) -> np.ndarray:
        """The body's mask on the whole model grid (built on demand: prefer box/local_mask)."""
        full = np.zeros(self.grid_shape, dtype=bool)
        full[self.box] = self.local_mask
        return full


UNCERTAIN_NOTE = "level naming uncertain"
UNSEEN_COUNT_NOTE = "the number of rib-bearing vertebrae is not seen"
"""How the two notes that put a study's names in doubt begin (see :func:`naming_doubt`)."""
COUNT_AT_TOP_NOTE = "the number of rib-bearing vertebrae is read from the top vertebrae"
"""How the note begins where the ribs tie the rib counts and the top vertebrae's cue settles
the count (see :func:`count_read_at_top`): the names are not in doubt."""
NO_SACRUM_TIE_NOTE = "no sacrum, and the ribs in view do not show where the thoracic spine begins or ends"
"""Why a column without the sacrum is left unnamed when its readings tie (see :func:`name_levels`)."""
NO_THORACIC_NOTE = "no sacrum, and no rib-bearing vertebra among the bodies: levels cannot be named"
"""Why a column without the sacrum is left unnamed when its best reading names no body thoracic."""


SPLIT_RATIO = 0.5
"""Two named bodies lying closer than this fraction of the spacing of the bodies around them may
be one vertebra the column cut in two (see :func:`split_suspects`). In 980 recorded development
screenings (default mix, fracture mode, thick slices, 11 and 13 rib pairs) 13 studies had an
inner pair below 0.5: 12 with names wrong (a body cut in two, or a neighbour's piece counted as
a body), 2 of them not otherwise in doubt, and one named right (0.49). A held-out study whose L4
was cut in two (0.47) was read as six lumbar vertebrae and not in doubt. A collapsed body does
not come close: in the fracture-mode screenings, the 512 pairs beside a grade 3 body named right
came no lower than 0.64 (median 0.91)."""


def split_suspects(centroids_mm: np.ndarray) -> list[tuple[int, float, float]]:
    """Adjacent pairs of bodies (centroids ordered superior to inferior, millimetres) that may be
    one vertebra cut in two: (index of the upper body, their distance, the median distance of up
    to two neighbouring pairs on each side), where the distance is under :data:`SPLIT_RATIO` of
    that median. Pairs with the first or the last body are left out: a body the scan cuts has its
    centroid moved towards its neighbour."""
    centroids_mm = np.asarray(centroids_mm, dtype=float)
    if len(centroids_mm) < 4:
        return []
    gaps = np.linalg.norm(np.diff(centroids_mm, axis=0), axis=1)
    found = []
    for i in range(1, len(gaps) - 1):
        around = [gaps[j] for j in range(max(0, i - 2), min(len(gaps), i + 3)) if j != i]
        usual = float(np.median(around))
        if gaps[i] < SPLIT_RATIO * usual:
            found.append((i, float(gaps[i]), usual))
    return found


def split_doubt(notes: Sequence[str], vertebrae: Iterable[tuple[str, Sequence[float]]]) -> list[str]:
    """The labeller's ``notes`` with a close-call note (see :data:`UNCERTAIN_NOTE`) for each pair
    of :func:`split_suspects` among the measured ``vertebrae`` (level, centroid in millimetres;
    S1 included), taken cranial to caudal.

    Run on the findings' centroids, once the bodies are measured: those are what the threshold
    was chosen on. The labeller's component centroids differ (in the held-out study of
    :data:`SPLIT_RATIO`, 13.6 mm between the two pieces against the findings' 11.9)."""
    ordered = sorted(vertebrae, key=lambda v: level_index(v[0]))
    names = [level for level, _ in ordered]
    added = [
        f"{UNCERTAIN_NOTE}: {names[i]} and {names[i + 1]} lie {gap:.0f} mm apart where the bodies around them "
        f"lie {usual:.0f} mm apart: they may be one vertebra cut in two, and every name on one side of them "
        "one off"
        for i, gap, usual in split_suspects(np.array([centroid for _, centroid in ordered], dtype=float))
    ]
    return [*notes, *added]


def naming_doubt(notes) -> str | None:
    """Which doubt the labeller's ``notes`` put on the names: ``"close call"`` (another naming
    fits nearly as well: any name may be one off), ``"rib count"`` (only the prior chose the
    number of rib-bearing vertebrae: the cervical and thoracic names may be), or None."""
    if any(note.startswith(UNCERTAIN_NOTE) for note in notes):
        return "close call"
    if any(note.startswith(UNSEEN_COUNT_NOTE) for note in notes):
        return "rib count"
    return None


COLLAPSE_GRADE = 2
"""A thoracic vertebra graded this or more puts a rib count read at the top back in doubt (see
:func:`count_doubt_after_grading`)."""


def count_doubt_after_grading(notes: Sequence[str], grades: Iterable[tuple[str, int]]) -> list[str]:
    """The labeller's ``notes`` once the vertebrae are graded (``grades``: level, Genant grade).

    A rib count read from the top vertebrae (:data:`COUNT_AT_TOP_NOTE`) is put back in doubt
    where a thoracic vertebra is graded :data:`COLLAPSE_GRADE` or more: a collapsed body that the
    column lost, or merged with a neighbour, hides a rib-bearing vertebra, and a spine of 13 rib
    pairs so read shows the 12 that the top vertebrae confirm, every name below the collapse one
    off. Of 280 development phantoms, the two whose names were wrong with the count read at the
    top were such spines (a grade 3 T4 and T6)."""
    collapsed = [level for level, grade in grades if level.startswith("T") and grade >= COLLAPSE_GRADE]
    if not collapsed or not any(note.startswith(COUNT_AT_TOP_NOTE) for note in notes):
        return list(notes)
    which = f"{', '.join(collapsed)} {'is' if len(collapsed) == 1 else 'are'}"
    return [*notes, f"{UNSEEN_COUNT_NOTE} for certain: {which} collapsed, and a collapsed thoracic vertebra "
                    "the column lost or merged with a neighbour would hide a rib-bearing one (the names "
                    "below it would be one off)"]


@dataclass(frozen=True)
class TopBody:
    """One of the top whole vertebrae the top-level cue looks at (see :mod:`.top_levels`)."""

    centroid_index: np.ndarray
    features: np.ndarray = field(repr=False)
    terms: np.ndarray | None = None
    """The model's log-likelihood term per class of :data:`~.top_levels.CLASSES` (nats); None
    without a model."""


@dataclass
class LevelResult:
    vertebrae: list[LabelledVertebra]
    anchor: str
    """Which anchors named the levels: 'ribs+cervical', 'ribs', 'sacrum', 'ribs+sacrum' or 'none'."""
    notes: list[str] = field(default_factory=list)
    top: list[TopBody] = field(default_factory=list)
    """The top whole vertebrae with the cue's features (when the image was given): what
    ``vcfscreen train-levels`` fits the cue on."""
    unnamed: int = 0
    """Vertebral bodies the segmentation found that were given no level, and so are not in
    :attr:`vertebrae` (not reported)."""

    @property
    def doubt(self) -> str | None:
        """Which doubt the notes put on the names (see :func:`naming_doubt`)."""
        return naming_doubt(self.notes)

    @property
    def in_doubt(self) -> bool:
        """Some names may be one off."""
        return self.doubt is not None


def unreported_spine(levels: LevelResult) -> NotEligibleError | None:
    """Why a study's reading says nothing about its spine, or None when it does.

    Only vertebrae with a level are reported. Where the segmentation found bodies and none of
    them above the sacrum could be named, a result with no vertebra (or S1 alone) would read as
    a screened study without a fracture, while the fractures were simply not reported: such a
    study is not screened (``not_eligible``, reason ``levels_not_named``) and goes to a reader.
    Nothing found at all (no body, no sacrum) is ``no_spine``: the series holds no spine the
    models can see. S1 alone, with no body above it, is a reading of what is in view."""
    if any(v.level != "S1" for v in levels.vertebrae):
        return None
    if levels.unnamed:
        bodies = f"{levels.unnamed} vertebral bod{'y was' if levels.unnamed == 1 else 'ies were'} found"
        why = "; ".join(levels.notes) or "no anchor placed them"
        return LevelsNotNamedError(f"{bodies} but no level could be named, so none is reported ({why})")
    if not levels.vertebrae:
        return NoSpineError("the segmentation found no vertebral column and no sacrum in the series")
    return None


@dataclass
class Component:
    centroid: np.ndarray
    box: tuple[slice, slice, slice]
    local_mask: np.ndarray


@dataclass
class ColumnBody:
    """One vertebra of the column: its segment along the centre line and its body, if any."""

    s_range: tuple[float, float]
    """Arc-length interval (mm, increasing to Superior) of the segment."""
    centroid: np.ndarray
    """Centroid (voxel index): of the body, or of the centre line for a missed body."""
    component: Component | None
    """The body's voxels; None for a missed body (counted, not reported)."""
    rib_score: float = 0.0


def components(mask: np.ndarray, spacing_mm: np.ndarray, min_mm3: float, limit: int) -> list[Component]:
    """Connected components of ``mask`` at least ``min_mm3`` large (the ``limit`` largest),
    each with its centroid (voxel index), bounding box and mask inside the box.

    One labelling pass and per-box work only, so a noisy segmentation with hundreds of
    fragments costs milliseconds, not a full-grid pass per fragment."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    keep = np.flatnonzero(sizes * float(np.prod(spacing_mm)) >= min_mm3)
    keep = keep[np.argsort(-sizes[keep], kind="stable")][:limit]
    boxes = ndimage.find_objects(labels)
    out = []
    for index in sorted(keep):
        box = boxes[index]
        local = labels[box] == index + 1
        offset = np.array([b.start for b in box], dtype=float)
        out.append(Component(np.argwhere(local).mean(axis=0) + offset, box, local))
    return out


def without_specks(mask: np.ndarray, spacing_mm: np.ndarray, min_mm3: float = SPECK_MM3) -> np.ndarray:
    """``mask`` without its connected components smaller than ``min_mm3``."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes * float(np.prod(spacing_mm)) >= min_mm3
    keep[0] = False
    return keep[labels]


def body_mask(class_map: np.ndarray, body_probability: np.ndarray | None = None) -> np.ndarray:
    """Body voxels: the argmax body class, grown by hysteresis into voxels whose body
    probability exceeds :data:`HYSTERESIS_LOW` when the probability is given (a weakly
    segmented body loses the argmax to background but keeps a clear probability)."""
    strong = class_map == BODY
    if body_probability is None:
        return strong
    weak = (np.asarray(body_probability) >= HYSTERESIS_LOW) & (class_map != SACRUM)
    labels, count = ndimage.label(weak | strong)
    if count == 0:
        return strong
    seeded = np.zeros(count + 1, dtype=bool)
    seeded[np.unique(labels[strong])] = True
    seeded[0] = False
    return seeded[labels]


# ----------------------------------------------------------------------------- the column


def _running_median(values: np.ndarray, valid: np.ndarray, half: int) -> np.ndarray:
    """Median of the valid values within ``half`` rows of each row (NaN where none)."""
    out = np.full(values.shape, np.nan)
    rows = np.flatnonzero(valid)
    for r in range(len(values)):
        near = rows[(rows >= r - half) & (rows <= r + half)]
        if near.size:
            out[r] = np.median(values[near])
    return out


def _fill(values: np.ndarray) -> np.ndarray:
    """NaNs replaced by linear interpolation (constant beyond the ends)."""
    good = np.isfinite(values)
    if not good.any():
        return np.zeros_like(values)
    index = np.arange(len(values))
    return np.interp(index, index[good], values[good])


@dataclass
class Column:
    """The spine's centre line, one point per axial row (axis0), and arc length along it."""

    rows: np.ndarray
    """Axis0 indices the line covers, ascending."""
    centre: np.ndarray
    """(len(rows), 2): axis1, axis2 index of the line on each row."""
    tangent: np.ndarray
    """(len(rows), 3): unit tangent in millimetres (axis0, axis1, axis2 components), towards Superior."""
    s: np.ndarray
    """Arc length (mm) of each row's line point, increasing to Superior."""

    def offsets(self, points: np.ndarray, spacing_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(arc length, in-plane offset mm (N, 2: posterior, left) from the line, inside) of
        voxel indices (N, 3). Points on rows outside the line are not inside."""
        points = np.asarray(points)
        k = points[:, 0].astype(int) - int(self.rows[0])
        inside = (k >= 0) & (k < len(self.rows))
        k = np.clip(k, 0, len(self.rows) - 1)
        offset = (points[:, 1:] - self.centre[k]) * spacing_mm[1:]
        along = self.s[k] + offset[:, 0] * self.tangent[k, 1] + offset[:, 1] * self.tangent[k, 2]
        return along, offset, inside

    def locate(self, points: np.ndarray, spacing_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(arc length, in-plane distance mm, inside) of voxel indices (N, 3)."""
        along, offset, inside = self.offsets(points, spacing_mm)
        return along, np.hypot(offset[:, 0], offset[:, 1]), inside

    def point_at(self, s_value: float) -> np.ndarray:
        """Voxel index of the line at arc length ``s_value``."""
        row = np.interp(s_value, self.s, self.rows.astype(float))
        return np.array([row, np.interp(s_value, self.s, self.centre[:, 0]), np.interp(s_value, self.s, self.centre[:, 1])])


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value at which the cumulative weight, in order of value, reaches half the total."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order[np.searchsorted(cumulative, 0.5 * cumulative[-1])]])


def _robust_fit(z: np.ndarray, values: np.ndarray, weights: np.ndarray, degree: int) -> np.poly1d:
    """Weighted polynomial fit of ``values`` over ``z`` (degree lowered for few points)."""
    degree = int(min(degree, max(0, len(np.unique(z)) - 1)))
    return np.poly1d(np.polyfit(z, values, degree, w=np.sqrt(weights)))


def _slabs(found: list[Component], spacing_mm: np.ndarray, whole: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each component cut into slabs of :data:`SLAB_MM` along axis0, except the components
    from index ``whole`` on, which stay one piece: (component index, centroid (voxel index),
    voxel count) of every slab."""
    owner, centres, counts = [], [], []
    rows_per_slab = max(1, int(np.rint(SLAB_MM / spacing_mm[0])))
    for k, component in enumerate(found):
        points = np.argwhere(component.local_mask)
        slab = points[:, 0] // rows_per_slab if k < whole else np.zeros(len(points), dtype=int)
        count = np.bincount(slab)
        present = np.flatnonzero(count)
        sums = np.stack([np.bincount(slab, weights=points[:, a])[present] for a in range(3)], axis=1)
        start = np.array([b.start for b in component.box], dtype=float)
        owner.append(np.full(len(present), k))
        centres.append(sums / count[present, None] + start)
        counts.append(count[present].astype(float))
    return np.concatenate(owner), np.concatenate(centres), np.concatenate(counts)


SLAB_GROW_ROUNDS = 6
"""Rounds in which :func:`spine_column` refits its curve through every slab within
:data:`COLUMN_SLAB_LIMIT_MM` of the last one, after keeping or dropping whole components (0: no
rounds). Above two adjacent collapses the spine can bend forward sharply: the bodies above merged
into one component whose slabs ran 7 to 110 mm off the cubic through the column, so the component
was dropped whole, with both grade 3 fractures, and the study came back negative (held-out seed
2525, study 4274725761363724744). Slab by slab, the curve follows the bend up: 3 rounds reached T4,
6 reached T3 (the scan's first whole body). On 90 new phantoms screened with 0 and 6 rounds (60 of
the default mix, 30 with a fracture in every study) no result changed."""
COLUMN_SLAB_LIMIT_MM = 20.0
"""Largest distance (in-plane, mm) of a component's slabs from the column's curve, on average
in the last whole-component round, and of each slab in the slab rounds."""


def spine_column(body: np.ndarray, sacrum: np.ndarray | None, spacing_mm: np.ndarray) -> Column | None:
    """Centre line through the vertebral bodies (and the sacrum below them).

    First a smooth curve (cubic in axis0) through the body components, weighted by volume,
    with components far from it rejected and the curve refitted: a lateral false body, a hip
    or a shoulder cannot pull it off the spine. Each body component enters the fit as slabs
    of :data:`SLAB_MM` along axis0, not as its centroid alone: several bodies merged into one
    component (common in the upper thoracic spine, where the discs are thin) left the curve
    free above its centroid, and the cubic's extrapolation ran 50-150 mm off the kyphosis,
    losing every body above (fresh6: 3 of 100 studies, 10 bodies, 2 grade-3 fractures). A
    component is first kept or dropped whole by its slabs' mean distance from the curve; then, for
    :data:`SLAB_GROW_ROUNDS` rounds, the curve is refitted through every slab near it, which
    follows a sharp bend that a whole merged component above it would not. The sacrum stays one
    point, as before: below the bodies the line follows the curve. Then each row's median
    position of the body voxels near that curve, smoothed; the line spans the kept components
    (those with a slab kept) only."""
    spacing_mm = np.asarray(spacing_mm, dtype=float)
    found = components(body, spacing_mm, SPECK_MM3, 400)
    n_body = len(found)
    if sacrum is not None and sacrum.any():
        found += components(sacrum, spacing_mm, MIN_BODY_MM3, 1)
    if not found:
        return None
    centres = np.array([c.centroid for c in found])
    owner, slab_centres, slab_counts = _slabs(found, spacing_mm, whole=n_body)
    volumes = np.bincount(owner, weights=slab_counts, minlength=len(found))
    z = slab_centres[:, 0]
    # The spine is the heaviest vertical chain: start near the volume-weighted median position,
    # taken on each in-plane axis apart. The centre of the component at the lateral median is
    # no such point: a small false body level with the spine laterally can be that component
    # however far in front of the spine it lies (a blob of metal artefact 60 mm anterior once
    # left a column 56 mm long, and every level of the study unnamed).
    mid = np.array([_weighted_median(centres[:, a], volumes) for a in (1, 2)])
    offset = np.hypot(*((centres[:, 1:] - mid) * spacing_mm[1:]).T)
    keep = (offset <= 60.0) | (offset == offset.min())
    for limit in (40.0, 25.0, COLUMN_SLAB_LIMIT_MM):
        if keep.sum() == 0:
            return None
        used = keep[owner]
        fits = [_robust_fit(z[used], slab_centres[used, a], slab_counts[used], 3) for a in (1, 2)]
        predicted = np.column_stack([f(z) for f in fits])
        slab_distance = np.hypot(*((slab_centres[:, 1:] - predicted) * spacing_mm[1:]).T)
        # A component's distance: the voxel-weighted mean over its slabs.
        distance = np.bincount(owner, weights=slab_distance * slab_counts, minlength=len(found)) / volumes
        keep = distance <= limit
    if keep.sum() == 0:
        return None
    # Then slab by slab (SLAB_GROW_ROUNDS): a merged component whose near slabs lie on the curve and
    # whose far ones run off it at a sharp bend pulls the curve up the bend round by round.
    slab_keep = keep[owner]
    for _ in range(SLAB_GROW_ROUNDS):
        fits = [_robust_fit(z[slab_keep], slab_centres[slab_keep, a], slab_counts[slab_keep], 3) for a in (1, 2)]
        predicted = np.column_stack([f(z) for f in fits])
        near = np.hypot(*((slab_centres[:, 1:] - predicted) * spacing_mm[1:]).T) <= COLUMN_SLAB_LIMIT_MM
        if not near.any():  # a curve no slab lies near: keep the last slabs rather than fit nothing
            break
        slab_keep = near
    keep = np.bincount(owner, weights=slab_keep.astype(float), minlength=len(found)) > 0
    lo = int(np.floor(min(found[i].box[0].start for i in np.flatnonzero(keep))))
    hi = int(max(found[i].box[0].stop for i in np.flatnonzero(keep)))
    rows = np.arange(lo, hi)
    guess = np.column_stack([f(rows.astype(float)) for f in fits])
    points = np.argwhere(body[lo:hi])
    refined = np.full((len(rows), 2), np.nan)
    if len(points):
        count = np.bincount(points[:, 0], minlength=len(rows))
        starts = np.concatenate([[0], np.cumsum(count)])
        for r in np.flatnonzero(count):
            row = points[starts[r] : starts[r + 1], 1:]
            near = row[np.hypot(*((row - guess[r]) * spacing_mm[1:]).T) <= TUBE_RADIUS_MM]
            if len(near) >= 3:
                refined[r] = np.median(near, axis=0)
    line = np.where(np.isfinite(refined), refined, guess)
    sigma = max(1.0, 8.0 / spacing_mm[0])
    line = np.stack([ndimage.gaussian_filter1d(line[:, a], sigma, mode="nearest") for a in range(2)], axis=1)
    mm = np.column_stack([rows * spacing_mm[0], line * spacing_mm[1:]])
    if len(rows) < 2:
        slope = np.tile([1.0, 0.0, 0.0], (len(rows), 1))
    else:
        slope = np.gradient(ndimage.gaussian_filter1d(mm, max(1.0, 10.0 / spacing_mm[0]), axis=0, mode="nearest"), axis=0)
    tangent = slope / np.linalg.norm(slope, axis=1, keepdims=True)
    steps = np.linalg.norm(np.diff(mm, axis=0), axis=1) if len(rows) > 1 else np.zeros(0)
    s = np.concatenate([[0.0], np.cumsum(steps)])
    return Column(rows=rows, centre=line, tangent=tangent, s=s)


def _profile(along: np.ndarray, weights: np.ndarray | None, lo: float, n: int) -> np.ndarray:
    """Counts per 1 mm bin of arc length from ``lo``, ``n`` bins."""
    index = np.floor(along - lo).astype(int)
    keep = (index >= 0) & (index < n)
    return np.bincount(index[keep], weights=None if weights is None else weights[keep], minlength=n)[:n].astype(float)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True."""
    padded = np.concatenate([[False], flags, [False]]).astype(int)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2]))


def prior_pitch(height_mm: np.ndarray) -> np.ndarray:
    """Typical vertebral pitch (mm) at a height above the sacrum's top: ~30 mm at L5, ~26 mm
    at L1, ~18 mm at T1 (body heights ~27 to ~14 mm, discs ~10 to ~4 mm)."""
    return np.clip(30.0 - 0.03 * np.asarray(height_mm, dtype=float), 16.0, 31.0)


def local_pitch(gaps: np.ndarray, n: int, height0: float = 0.0) -> np.ndarray:
    """Vertebral pitch (mm) at each 1 mm bin, from the centres of clear discs (bin indices).

    The shape along the spine is the anatomical one (:func:`prior_pitch`, bin 0 lying
    ``height0`` mm above the sacrum's top), scaled to the patient: the distances between
    consecutive clear discs (each one pitch, or a whole number of pitches where a disc was
    missed) give the ratio to the prior, as a constant (median) or, when clear discs cover
    much of the column, as a straight line along it (Theil-Sen), so a spine whose pitch
    departs from the usual shape is followed."""
    bins = np.arange(n, dtype=float)
    prior = prior_pitch(height0 + bins)
    if len(gaps) < 2:
        return prior
    d = np.diff(gaps).astype(float)
    mid = 0.5 * (gaps[1:] + gaps[:-1])
    m = np.clip(np.rint(mid).astype(int), 0, n - 1)
    # Start from the patient's scale as the single-pitch distances give it: starting from the
    # prior alone, a large patient (every distance a third above it) matches nothing but the
    # distances spanning missed discs, and those read as a smaller patient.
    single = d / prior[m]
    single = single[(single >= 0.7) & (single <= 1.8)]
    ratio_at = np.full(n, float(np.median(single)) if len(single) >= 3 else 1.0)
    for _ in range(4):
        expected = ratio_at[m] * prior[m]
        multiple = np.maximum(1, np.rint(d / expected))
        ratio = d / multiple / prior[m]
        ok = np.abs(ratio - ratio_at[m]) <= 0.3 * ratio_at[m]
        if not ok.any():
            break
        x, y = mid[ok], ratio[ok]
        if ok.sum() >= 5 and np.ptp(x) >= 120.0:
            i, j = np.triu_indices(len(x), 1)
            dx = x[j] - x[i]
            slope = float(np.median((y[j] - y[i])[dx > 0] / dx[dx > 0]))
            ratio_at = float(np.median(y - slope * x)) + slope * bins
        else:
            # One ratio, measured where the clear discs are; farther away it fades back
            # towards the anatomical prior (lumbar and thoracic sizes need not scale alike).
            away = np.maximum(0.0, np.maximum(x.min() - bins, bins - x.max()))
            ratio_at = 1.0 + (float(np.median(y)) - 1.0) * np.exp(-away / 100.0)
        ratio_at = np.clip(ratio_at, 0.7, 1.8)
    return np.clip(ratio_at * prior, MIN_PITCH_MM, MAX_PITCH_MM)


def weak_discs(cut_cost: np.ndarray, clear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bins and depths of the weak discs (see :data:`DIP_DEPTH`) more than 3 bins from a clear
    one (``clear``: per bin, whether it lies in a clear disc, which the cut already pays for).
    Minima within 2 bins of each other are one disc, at the deeper."""
    n = len(cut_cost)
    if n < 3:
        return np.zeros(0), np.zeros(0)
    reach = DIP_REACH_MM
    padded = np.concatenate([np.full(reach, -np.inf), cut_cost, np.full(reach, -np.inf)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, reach)
    before = windows[:n].max(axis=1)  # highest cost over the reach bins before each bin
    after = windows[reach + 1 : reach + 1 + n].max(axis=1)  # and after it
    depth = np.minimum(before, after) - cut_cost
    near_clear = ndimage.binary_dilation(clear, iterations=3)
    interior = np.zeros(n, dtype=bool)
    interior[1:-1] = (cut_cost[1:-1] <= cut_cost[:-2]) & (cut_cost[1:-1] <= cut_cost[2:])
    bins: list[int] = []
    depths: list[float] = []
    for b in np.flatnonzero(interior & ~near_clear & (depth >= DIP_DEPTH)):
        if bins and b - bins[-1] <= 2:
            if depth[b] > depths[-1]:
                bins[-1], depths[-1] = int(b), float(depth[b])
            continue
        bins.append(int(b))
        depths.append(float(depth[b]))
    return np.array(bins, dtype=float), np.array(depths)


def cut_column(
    cut_cost: np.ndarray,
    pitch: np.ndarray,
    gaps: np.ndarray,
    weak: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[int]:
    """Cut positions (bin indices, first 0 and last n-1) splitting the column into vertebrae.

    Dynamic programming over 1 mm bins: each cut pays ``cut_cost`` of its bin, each segment a
    quadratic penalty on its length's deviation from the local pitch, wider below it than above
    (:data:`SHORT_SIGMA`, :data:`LENGTH_SIGMA`: a fracture shortens a body; wider still for a
    segment full of body, :data:`FILLED_SHORT_SIGMA`; end segments, which may be partial, pay
    only on excess), and a penalty for every disc it leaves uncut:
    :data:`UNCUT_GAP_COST` for a clear one (``gaps``, bin centres), its depth capped there for
    a weak one (``weak``: bins and depths, see :func:`weak_discs`)."""
    n = len(cut_cost)
    if n < 2:
        return [0, max(0, n - 1)]
    uncut = np.zeros(n + 1)
    for g in gaps:
        uncut[int(g) + 1 :] += UNCUT_GAP_COST  # uncut[k] = cost of the discs at bins < k
    if weak is not None:
        for b, depth in zip(*weak):
            uncut[int(b) + 1 :] += min(float(depth), UNCUT_GAP_COST)
    best = np.full(n, np.inf)
    back = np.zeros(n, dtype=int)
    best[0] = 0.0
    sigma = LENGTH_SIGMA
    # filled[k]: bins before k with more body than disc (a drop of 0.5 or more)
    filled = np.concatenate([[0], np.cumsum(cut_cost >= 0.5 * CUT_COST_PER_DROP)])
    for j in range(1, n):
        p = pitch[j]
        lo = max(0, j - int(np.ceil(1.9 * p)))
        i = np.arange(lo, j)
        if i.size == 0:
            continue
        length = (j - i).astype(float)
        pm = 0.5 * (pitch[i] + p)
        end = (i == 0) | (j == n - 1)
        excess = length - pm
        short_sigma = np.where((filled[j] - filled[i]) >= FILLED_SHARE * length, FILLED_SHORT_SIGMA, SHORT_SIGMA)
        dev = excess / (np.where(excess > 0, sigma, short_sigma) * pm)
        seg = np.where(end, np.maximum(dev, 0.0) ** 2, dev**2)
        too_short = (~end) & (length < 0.45 * pm)
        seg = np.where(too_short, np.inf, seg)
        margin = 3
        inner = uncut[np.maximum(j - margin, 0)] - uncut[np.minimum(i + margin + 1, n)]
        seg = seg + np.maximum(inner, 0)
        total = best[i] + seg + (0.0 if j == n - 1 else cut_cost[j])
        k = int(np.argmin(total))
        best[j], back[j] = total[k], i[k]
    cuts = [n - 1]
    while cuts[-1] > 0:
        cuts.append(int(back[cuts[-1]]))
    return cuts[::-1]


def _pitch_discs(clear: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """The disc centres (bins) that measure the pitch: the clear discs, and the weak discs lying
    between the lowest and the highest clear one.

    Where a stretch of the column shows no clear disc (the thin lower thoracic discs, a collapse
    the segmenter runs into its neighbours), the distance across it is a whole number of pitches
    that the clear discs alone must guess. A large patient's lumbar pitch then carried up the
    thoracic spine: 31 mm where the bodies came every 25 mm, and the long segments took a
    collapsed grade 3 body into its neighbour (lost, and the names above it moved). The weak
    discs inside the stretch say how many pitches it holds (nearly all lie on a true disc, see
    :data:`DIP_DEPTH`). Beyond the clear discs they do not count: there a run of weak discs can
    outnumber the clear ones and set the scale of the whole column (a synthetic column with a
    45 mm lumbar pitch had its lumbar bodies cut in two)."""
    if len(clear) < 2:
        return clear
    inside = weak[(weak > clear.min()) & (weak < clear.max())]
    return np.sort(np.concatenate([clear, inside]))


def _cut_at(along: np.ndarray, s_disc: np.ndarray, lo: float, sacrum_s: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The column's segment boundaries (arc length, mm, ascending: the first at ``lo``, the last
    at ``lo + ceil(max(along) - lo) + 1``, above the highest body voxel) and the local pitch per
    bin, with the 1 mm bins starting at ``lo``. ``along``: arc length of the body voxels in the
    tube; ``s_disc``: of the disc voxels."""
    n = int(np.ceil(along.max() - lo)) + 1
    area = ndimage.gaussian_filter1d(_profile(along, None, lo, n), 1.5)
    disc = ndimage.gaussian_filter1d(_profile(s_disc, None, lo, n), 1.5)
    reference = np.maximum(ndimage.maximum_filter1d(area, size=41, mode="nearest"), 1e-6)
    relative = area / reference
    disc_ref = max(float(np.percentile(disc[disc > 0], 90)) if (disc > 0).any() else 0.0, 1e-6)
    drop = relative - 0.5 * np.minimum(disc / disc_ref, 1.0)
    # Clear discs: runs of bins with (almost) no body; their centres measure the pitch, with the
    # weak discs between them (see _pitch_discs).
    clear = relative < 0.12
    gaps = np.array([0.5 * (a + b - 1) for a, b in _runs(clear) if a > 0 and b < n], dtype=float)
    cut_cost = CUT_COST_PER_DROP * np.clip(drop, -0.3, 1.0)
    weak = weak_discs(cut_cost, clear)
    pitch = local_pitch(_pitch_discs(gaps, weak[0]), n, 0.0 if sacrum_s is None else lo - sacrum_s)
    cuts = np.array(cut_column(cut_cost, pitch, gaps, weak), dtype=float)
    cuts[-1] += 1.0  # the last segment takes in the last bin
    return lo + cuts, pitch


def agreed_cutting(interior: list[np.ndarray]) -> int:
    """Index of the cutting (interior cut positions, mm) that agrees best with the others: the
    fewest disagreements summed over every pair, a pair's being its cuts without a cut of the
    other within :data:`CUT_AGREE_MM`, and at least the difference of their cut counts (two
    close cuts can both lie near one of the other's; the count still tells one body from two).
    An extra cut at the column's end counts as much as one in the middle. The first of equals
    wins: with no two agreeing, the cutting at the bins' own phase."""

    def unmatched(a: np.ndarray, b: np.ndarray) -> int:
        if len(b) == 0:
            return len(a)
        return int(np.count_nonzero(np.abs(a[:, None] - b[None, :]).min(axis=1) > CUT_AGREE_MM))

    def disagreement(a: np.ndarray, b: np.ndarray) -> int:
        return max(unmatched(a, b) + unmatched(b, a), abs(len(a) - len(b)))

    n = len(interior)
    pairs = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            pairs[i, j] = pairs[j, i] = disagreement(interior[i], interior[j])
    return int(np.argmin(pairs.sum(axis=1)))


def column_bodies(
    class_map: np.ndarray, spacing_mm: np.ndarray, body_probability: np.ndarray | None = None
) -> tuple[list[ColumnBody], Column | None, float | None]:
    """The column's vertebrae, superior first (missed bodies included, without a component),
    the column, and the sacrum top's arc length (None without a sacrum)."""
    spacing_mm = np.asarray(spacing_mm, dtype=float)
    bodies_mask = body_mask(class_map, body_probability)
    sacrum_found = components(class_map == SACRUM, spacing_mm, MIN_BODY_MM3, 1)
    sacrum_mask = np.zeros(class_map.shape, dtype=bool)
    if sacrum_found:
        sacrum_mask[sacrum_found[0].box] = sacrum_found[0].local_mask
    column = spine_column(bodies_mask, sacrum_mask, spacing_mm)
    if column is None:
        return [], None, None
    voxel_mm3 = float(np.prod(spacing_mm))
    body_points = np.argwhere(bodies_mask)
    along, distance, inside = column.locate(body_points, spacing_mm)
    in_tube = inside & (distance <= TUBE_RADIUS_MM)
    body_points, along = body_points[in_tube], along[in_tube]
    if len(body_points) == 0:
        return [], column, None

    sacrum_s = None
    if sacrum_mask.any():
        sac_points = np.argwhere(sacrum_mask)
        s_sac, d_sac, in_sac = column.locate(sac_points, spacing_mm)
        s_sac = s_sac[in_sac & (d_sac <= TUBE_RADIUS_MM + 15.0)]
        if s_sac.size * voxel_mm3 >= MIN_BODY_MM3:
            lo = float(np.floor(s_sac.min()))
            area = _profile(s_sac, None, lo, int(np.ceil(s_sac.max() - lo)) + 1)
            area = ndimage.gaussian_filter1d(area, 2.0)
            sacrum_s = lo + float(np.flatnonzero(area >= 0.3 * area.max()).max())
            sacrum_bottom = float(np.percentile(s_sac, SACRUM_BOTTOM_PERCENTILE))
    if sacrum_s is not None:
        below = min(sacrum_s - BENEATH_SACRUM_MM, sacrum_bottom)
        beneath = np.count_nonzero(along < below) * voxel_mm3
        if beneath >= BENEATH_SACRUM_MM3:
            sacrum_s = None  # vertebral body below it: not the sacrum
    if sacrum_s is not None:
        keep = along > sacrum_s
        body_points, along = body_points[keep], along[keep]
        if len(body_points) == 0:
            return [], column, sacrum_s

    lo = float(np.floor(along.min())) if sacrum_s is None else float(np.floor(sacrum_s))
    disc_points = np.argwhere(class_map == DISC)
    s_disc, d_disc, in_disc = column.locate(disc_points, spacing_mm)
    s_disc = s_disc[in_disc & (d_disc <= TUBE_RADIUS_MM)]
    cuttings = [_cut_at(along, s_disc, lo - phase, sacrum_s)
                for phase in np.arange(CUT_PHASES) / CUT_PHASES]
    bounds, pitch = cuttings[agreed_cutting([b[1:-1] for b, _ in cuttings])]

    segments: list[tuple[float, float, np.ndarray]] = []
    for s0, s1 in pairwise(bounds):
        inside_seg = (along >= s0) & (along < s1)
        segments.append((s0, s1, body_points[inside_seg]))
    volumes = np.array([len(p) * voxel_mm3 for _, _, p in segments])
    out: list[ColumnBody] = []
    for k, (s0, s1, pts) in enumerate(segments):
        near = volumes[max(0, k - 2) : k + 3]
        typical = float(np.median(near[near > 0])) if (near > 0).any() else 0.0
        end = k == 0 or k == len(segments) - 1
        component = _segment_component(pts, class_map.shape, spacing_mm)
        volume = 0.0 if component is None else float(component.local_mask.sum()) * voxel_mm3
        missed = component is None or volume < max(MIN_BODY_MM3, MISSED_FRACTION * typical)
        if missed:
            is_bottom_on_sacrum = k == 0 and sacrum_s is not None
            if end and not is_bottom_on_sacrum:
                continue  # a sliver at the edge of the column: a partial body or noise, not counted
            if is_bottom_on_sacrum and volume < 0.5 * MIN_BODY_MM3 and (s1 - s0) < 0.6 * pitch[0]:
                continue  # a thin remnant above the sacrum top, not a vertebra
            out.append(ColumnBody((s0, s1), column.point_at(0.5 * (s0 + s1)), None))
        else:
            out.append(ColumnBody((s0, s1), component.centroid, component))
    out.reverse()  # superior first
    return out, column, sacrum_s


def _segment_component(points: np.ndarray, shape: tuple[int, ...], spacing_mm: np.ndarray) -> Component | None:
    """The body of a segment: its largest connected piece and any piece at least a quarter
    of it (a body split by a fracture line stays whole; a speck is dropped)."""
    if len(points) == 0:
        return None
    lo = points.min(axis=0)
    hi = points.max(axis=0) + 1
    local = np.zeros(hi - lo, dtype=bool)
    local[tuple((points - lo).T)] = True
    labels, count = ndimage.label(local)
    if count > 1:
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        sizes[0] = 0
        keep = sizes >= 0.25 * sizes.max()
        keep[0] = False
        local = keep[labels]
    kept = np.argwhere(local)
    if len(kept) == 0:
        return None
    k_lo, k_hi = kept.min(axis=0), kept.max(axis=0) + 1
    local = local[tuple(slice(a, b) for a, b in zip(k_lo, k_hi))]
    start = lo + k_lo
    box = tuple(slice(int(a), int(a + d)) for a, d in zip(start, local.shape))
    return Component(kept.mean(axis=0) + lo, box, local)


def _rib_scores(bodies: list[ColumnBody], class_map: np.ndarray, column: Column, spacing_mm: np.ndarray) -> None:
    """Each body's rib-head volume (mm3) beside the column within its segment, outside bodies."""
    if not bodies:
        return
    rib_points = np.argwhere(class_map == RIB_HEAD)
    if len(rib_points) == 0:
        return
    along, distance, inside = column.locate(rib_points, spacing_mm)
    near = inside & (distance <= RIB_REACH_MM)
    along = along[near]
    voxel_mm3 = float(np.prod(spacing_mm))
    for body in bodies:
        s0, s1 = body.s_range
        body.rib_score = float(np.count_nonzero((along >= s0) & (along < s1))) * voxel_mm3


@dataclass(frozen=True)
class BonePoints:
    """The voxels above the bone level on the rows the column covers, and where each lies
    beside the column: what the rib bands are cut from."""

    local: np.ndarray
    """(N, 3) voxel indices, axis 0 counted from :attr:`row0`."""
    row0: int
    rows: int
    """How many rows from ``row0`` the points were taken from."""
    along: np.ndarray
    posterior: np.ndarray
    lateral: np.ndarray
    """Arc length and in-plane offsets (mm, left positive) from the column, per point."""

    def in_zone(self, zone: tuple[tuple[float, float], tuple[float, float]]) -> np.ndarray:
        """Points in a ``((lateral lo, hi), (posterior lo, hi))`` band, on either side."""
        (lat_lo, lat_hi), (post_lo, post_hi) = zone
        side = np.abs(self.lateral)
        return (side >= lat_lo) & (side < lat_hi) & (self.posterior >= post_lo) & (self.posterior < post_hi)


def bone_points(column: Column, volume: np.ndarray, spacing_mm: np.ndarray, bone_level: float) -> BonePoints | None:
    """The bone beside the column (see :class:`BonePoints`); None when there is none."""
    r0, r1 = int(column.rows[0]), int(column.rows[-1]) + 1
    local = np.argwhere(np.asarray(volume[r0:r1]) > bone_level)
    if len(local) == 0:
        return None
    points = local.copy()
    points[:, 0] += r0
    along, offset, _inside = column.offsets(points, spacing_mm)
    return BonePoints(local, r0, r1 - r0, along, offset[:, 0], offset[:, 1])


def image_rib_volumes(
    bodies: list[ColumnBody], column: Column, volume: np.ndarray, spacing_mm: np.ndarray, bone_level: float,
    bone: BonePoints | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per body, the bone volume (mm3, the lesser of the two sides) within its segment in the
    rib-neck band and in the first-rib band (see :data:`RIB_NECK_ZONE_MM`). ``bone``, when
    given, is :func:`bone_points` of the same volume, already found."""
    n = len(bodies)
    neck, first = np.zeros(n), np.zeros(n)
    if n == 0:
        return neck, first
    bone = bone or bone_points(column, volume, spacing_mm, bone_level)
    if bone is None:
        return neck, first
    left = bone.lateral > 0
    voxel_mm3 = float(np.prod(spacing_mm))
    bands = [bone.in_zone(RIB_NECK_ZONE_MM), bone.in_zone(FIRST_RIB_ZONE_MM)]
    for i, body in enumerate(bodies):
        s0, s1 = body.s_range
        segment = (bone.along >= s0) & (bone.along < s1)
        for out, band in zip((neck, first), bands):
            here = segment & band
            out[i] = voxel_mm3 * min(np.count_nonzero(here & left), np.count_nonzero(here & ~left))
    return neck, first


def first_rib_owner(
    bodies: list[ColumnBody], column: Column, volume: np.ndarray, spacing_mm: np.ndarray, bone_level: float,
    bone: BonePoints | None = None,
) -> int | None:
    """Index of the body whose first rib the image shows, or None when no rib neck is seen.

    The topmost piece of bone (26-connected, at least :data:`RIB_PIECE_MIN_MM3`) on each side
    in :data:`FIRST_RIB_NECK_ZONE_MM` is taken as the first rib's neck; the mean position
    along the column of the sides that show one (both, as a rule; one side alone counts too),
    less :data:`NECK_ABOVE_CENTROID_MM`, is nearest to the centroid of the body that bears it.
    Unlike the band volumes, this does not depend on where the segment boundary between two
    bodies falls: the neck of T1's first rib rises to the C7/T1 disc, and the part above the
    boundary counts for C7's band. ``bone`` as in :func:`image_rib_volumes`."""
    if column is None or not bodies:
        return None
    bone = bone or bone_points(column, volume, spacing_mm, bone_level)
    if bone is None:
        return None
    band = bone.in_zone(FIRST_RIB_NECK_ZONE_MM) & (bone.along <= bodies[0].s_range[1] + 5.0)
    voxel_mm3 = float(np.prod(spacing_mm))
    shape = (bone.rows, *np.asarray(volume).shape[1:])
    tops = []
    for side in (bone.lateral > 0, bone.lateral <= 0):
        here = band & side
        if not here.any():
            continue
        mask = np.zeros(shape, dtype=bool)
        mask[tuple(bone.local[here].T)] = True
        labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
        piece = labels[tuple(bone.local[here].T)]
        sizes = np.bincount(piece, minlength=count + 1)
        centres = np.bincount(piece, weights=bone.along[here], minlength=count + 1) / np.maximum(sizes, 1)
        ribs = [centres[i] for i in range(1, count + 1) if sizes[i] * voxel_mm3 >= RIB_PIECE_MIN_MM3]
        if ribs:
            tops.append(max(ribs))
    if not tops:
        return None
    neck = float(np.mean(tops)) - NECK_ABOVE_CENTROID_MM
    centroids = column.offsets(np.array([np.round(b.centroid) for b in bodies], dtype=int), spacing_mm)[0]
    return int(np.argmin(np.abs(centroids - neck)))


def content_rows(volume: np.ndarray) -> tuple[int, int] | None:
    """[first, stop) of the axis-0 rows with any content (> 0); the rows beyond are padding
    to the grid multiple, 0 everywhere. None for an empty volume."""
    rows = np.flatnonzero(np.asarray(volume).reshape(volume.shape[0], -1).max(axis=1) > 0)
    return (int(rows[0]), int(rows[-1]) + 1) if rows.size else None


def cut_by_scan(bodies: list[ColumnBody], volume: np.ndarray) -> np.ndarray:
    """Per column body, whether the scan's first or last slice cuts it: its body reaches the
    first or last axis-0 row with any content of ``volume`` (rows beyond are grid padding, 0
    everywhere) and is shorter along axis 0 than :data:`CUT_EXTENT` of its nearest whole
    neighbours. A whole body can touch the edge too (or take in the sliver of the next one
    the edge cuts): it keeps its full height."""
    n = len(bodies)
    cut = np.zeros(n, dtype=bool)
    rows = content_rows(volume)
    if rows is None:
        return cut
    first, last = rows[0], rows[1] - 1
    spans = [b.component.box[0] if b.component is not None else None for b in bodies]
    extent = np.array([span.stop - span.start if span is not None else 0 for span in spans])
    edge = np.array([span is not None and (span.start <= first + EDGE_ROWS or span.stop - 1 >= last - EDGE_ROWS)
                     for span in spans], dtype=bool)
    for i in np.flatnonzero(edge):
        near = [j for j in sorted(range(n), key=lambda j: abs(j - i)) if j != i and not edge[j] and extent[j]][:2]
        cut[i] = not near or extent[i] < CUT_EXTENT * float(np.mean(extent[near]))
    return cut


def rib_evidence(volume_mm3: np.ndarray, midpoint_mm3: float) -> np.ndarray:
    """Log-likelihood ratio (nats) that a vertebra bears ribs, from the bone beside it."""
    v = np.asarray(volume_mm3, dtype=float)
    ratio = np.log2((v + 25.0) / (midpoint_mm3 + 25.0))
    return np.clip(EVIDENCE_SLOPE * ratio, -EVIDENCE_CAP, EVIDENCE_CAP)


def level_sequence(n_thoracic: int, n_lumbar: int) -> list[str]:
    """C1..C7, T1..Tn, L1..Lm."""
    return ([f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, n_thoracic + 1)]
            + [f"L{i}" for i in range(1, n_lumbar + 1)])


@dataclass(frozen=True)
class Naming:
    """One reading of the column: a name per body (superior first; '' beyond the known
    levels), the anatomy it assumes, the rib evidence of the bodies it names thoracic, and its
    score (log prior + that evidence)."""

    names: tuple[str, ...]
    anatomy: str
    score: float
    evidence: float


def body_evidence(rib: np.ndarray, first_rib: np.ndarray, cut: np.ndarray | None = None) -> np.ndarray:
    """Each body's rib evidence, fixed before any naming (a naming must not earn more by
    calling a body by another name): the rib-neck band's, and at the top of a long column,
    where the cervicothoracic junction can lie, the stronger of it and the first-rib band's
    (for the top bodies not ``cut`` by the scan, see :data:`TOP_BAND_BODIES`)."""
    evidence = np.asarray(rib, dtype=float).copy()
    if len(evidence) >= TOP_BAND_MIN_BODIES:
        whole = np.arange(len(evidence)) if cut is None else np.flatnonzero(~np.asarray(cut, dtype=bool))
        top = whole[:TOP_BAND_BODIES]
        evidence[top] = np.maximum(evidence[top], np.asarray(first_rib, dtype=float)[top])
    return evidence


def readings(rib: np.ndarray, first_rib: np.ndarray, has_sacrum: bool, cut: np.ndarray | None = None) -> list[Naming]:
    """Every naming of the bodies consistent with the anatomy variants, best first.

    With the sacrum below, the last body is the last lumbar vertebra, so each variant gives
    one naming; without it the column may end anywhere. A naming scores its variant's prior
    plus the rib evidence of every body it names thoracic (see :data:`TOP_BAND_BODIES`). With
    the sacrum there is one more: the typical anatomy with L1 lost in the column, at the price
    of :data:`LOST_BODY_NATS`."""
    n = len(rib)
    evidence = body_evidence(rib, first_rib, cut)

    def naming(sequence: list[str], offset: int, anatomy: str, log_prior: float) -> Naming:
        names = tuple(sequence[offset + i] if offset + i >= 0 else "" for i in range(n))
        thoracic = float(sum(evidence[i] for i, name in enumerate(names) if name.startswith("T")))
        return Naming(names, anatomy, log_prior + thoracic, thoracic)

    found = []
    for anatomy, n_thoracic, n_lumbar, prior in ANATOMY:
        sequence = level_sequence(n_thoracic, n_lumbar)
        spare = len(sequence) - n
        offsets = [spare] if has_sacrum else range(min(0, spare), spare + 1)
        found.extend(naming(sequence, offset, anatomy, float(np.log(prior))) for offset in offsets)
    if has_sacrum:
        # The typical anatomy with L1 lost in the column (see LOST_BODY_NATS).
        _anatomy, n_thoracic, n_lumbar, prior = ANATOMY[0]
        sequence = [name for name in level_sequence(n_thoracic, n_lumbar) if name != LOST_LEVEL]
        found.append(naming(sequence, len(sequence) - n, LOST_BODY_READING, float(np.log(prior)) - LOST_BODY_NATS))
    found.sort(key=lambda naming: -naming.score)
    return found


def unseen_rib_counts(found: list[Naming]) -> list[str]:
    """The rib-count variants (11 or 13 rib-bearing vertebrae) whose best naming scores the
    same rib evidence as the best naming: only the prior chose between them. With the sacrum
    in view that happens when the top of the thoracic spine is not: the extra or missing
    rib-bearing vertebra would lie beyond the scan, or in a body the scan cuts. Without the
    sacrum it happens whenever the run of rib-bearing bodies does not show both of its ends
    against a body without ribs."""
    evidence: dict[str, float] = {}
    for naming in found:  # best first: the first naming of each anatomy is its best
        evidence.setdefault(naming.anatomy, naming.evidence)
    best = found[0].evidence
    return [anatomy for anatomy, _t, n_lumbar, _p in ANATOMY[1:]
            if n_lumbar == ANATOMY[0][2] and anatomy in evidence and abs(evidence[anatomy] - best) < TIE_NATS]


def count_read_at_top(found: list[Naming], unseen: list[str], top: np.ndarray) -> float | None:
    """By how much the top vertebrae's cue alone (the prior left out) prefers the names of
    ``found[0]`` to the best naming of each rib count in ``unseen`` (nats, the least of them),
    when that is :data:`~.top_levels.COUNT_MARGIN` or more; else None. The ribs tie those counts,
    so only the prior chose; where the bone around T1 says the same by this margin, the count
    is read from the image, not assumed."""
    top = np.asarray(top, dtype=float)
    own = top_cue(found[0], top)
    rivals = [next(n for n in found if n.anatomy == anatomy) for anatomy in unseen]
    least = min(own - top_cue(rival, top) for rival in rivals)
    return least if least >= COUNT_MARGIN else None


def top_cue(naming: Naming, top: np.ndarray) -> float:
    """What the bone around the top vertebrae adds to a naming (nats): per body the cue looked
    at (a row of ``top`` without NaN), its term for the class of the name the naming gives it
    (see :mod:`engine.postprocess.top_levels`)."""
    return float(sum(top[i, class_of(name)] for i, name in enumerate(naming.names) if not np.isnan(top[i, 0])))


@dataclass(frozen=True)
class CueChoice:
    """The naming the top vertebrae's cue chose over the ribs' best, how much better it scores
    with the cue included (``gain``, nats), and by how much it beats the best naming with other
    names, the cue included (``margin``; ``inf`` when there is none)."""

    naming: Naming
    gain: float
    margin: float


def cue_choice(found: list[Naming], top: np.ndarray) -> CueChoice | None:
    """The naming the top vertebrae's cue prefers to the ribs' best (``found[0]``), when it wins
    by :data:`~engine.postprocess.top_levels.OVERRIDE_MARGIN` or more, the cue included; else
    None. The lost-body reading is left to its own price."""
    total = {id(naming): naming.score + top_cue(naming, top) for naming in found}
    ranked = sorted((n for n in found if n.anatomy != LOST_BODY_READING), key=lambda n: -total[id(n)])
    best = ranked[0]
    gain = total[id(best)] - total[id(found[0])]
    if best.names == found[0].names or gain < OVERRIDE_MARGIN:
        return None
    rival = next((n for n in ranked[1:] if n.names != best.names), None)
    margin = total[id(best)] - total[id(rival)] if rival is not None else np.inf
    return CueChoice(best, gain, margin)


def name_levels(
    rib: np.ndarray, first_rib: np.ndarray, has_sacrum: bool, cut: np.ndarray | None = None,
    top: np.ndarray | None = None,
) -> tuple[list[str], str, list[str]]:
    """Level names for bodies ordered superior to inferior (all above the sacrum), the
    anchors used, and notes. ``rib`` and ``first_rib`` are per-body rib evidence (nats, see
    :func:`rib_evidence`). ``top``, when given, is (bodies, classes) of the top vertebrae's cue
    terms (NaN for the bodies it did not look at, see :mod:`.top_levels`): with the sacrum in
    view, it can move the names to a reading the ribs tie or nearly tie (see :func:`cue_choice`);
    without the sacrum, where the count from below is missing, it can move them when the top of
    the spine is in view (a rib-like band beside C7 otherwise reads it as T1)."""
    n = len(rib)
    rib = np.asarray(rib, dtype=float)
    # Seen means evidence the naming scores (the wide first-rib band also takes in lumbar
    # transverse processes, and counts only at the top of a long column).
    ribs_seen = bool(n) and bool(np.any(body_evidence(rib, np.asarray(first_rib, dtype=float), cut) > 0))
    if n == 0 or (not has_sacrum and not ribs_seen):
        return [""] * n, "sacrum" if has_sacrum and n == 0 else "none", []
    if not ribs_seen:
        # No rib anywhere in view: the column lies below the ribs or the bands lie outside
        # the image. Either way their absence says nothing about any one body.
        rib = first_rib = np.zeros(n)
    found = readings(rib, np.asarray(first_rib, dtype=float), has_sacrum, cut)
    best = found[0]
    cue = None
    if top is not None and best.anatomy != LOST_BODY_READING:
        cue = cue_choice(found, np.asarray(top, dtype=float))
    notes: list[str] = []
    rival = None
    if cue is not None:
        # The top vertebrae outweigh the ribs' choice by the margin: with the sacrum, in practice
        # where the ribs fit two rib counts as well as each other and the prior alone chose;
        # without it, also where T1's first rib rising into the band beside C7 made C7 read as T1
        # and the column's lower end could not say otherwise. Its margin is over its own rival.
        best, margin = cue.naming, cue.margin
    else:
        # The lost-body reading is nobody's close rival: a body named L1 with ribs beside it is
        # reported as a disagreement (below), and when that reading wins it is in doubt anyway.
        rival = next((r for r in found[1:] if r.names != best.names and r.anatomy != LOST_BODY_READING), None)
        margin = best.score - rival.score if rival is not None else np.inf
    if not has_sacrum and margin < TIE_NATS:
        # Without the sacrum the ribs (and the cue, where it moved the names) must place the
        # column; a run of rib-bearing bodies with neither end in view (T1 or the last thoracic)
        # fits every placement equally. A close call is still named (and reported uncertain
        # below): an unnamed body is not reported at all, and its fracture with it.
        notes.append(NO_SACRUM_TIE_NOTE)
        return [""] * n, "none", notes
    if not has_sacrum and not any(name.startswith("T") for name in best.names):
        # Without the sacrum only the ribs can place the column; a naming without a thoracic
        # body has nothing to stand on.
        notes.append(NO_THORACIC_NOTE)
        return [""] * n, "none", notes
    if cue is not None:
        ribs_best = next((name for name in found[0].names if name), "")
        if best.anatomy != ANATOMY[0][0]:
            notes.append(f"transitional anatomy read: {best.anatomy}")
        notes.append(f"{UNCERTAIN_NOTE}: the ribs fit {found[0].anatomy} with the top vertebra {ribs_best} as well "
                     f"or better; the names follow the bone around the top vertebrae (first rib, clavicles, "
                     f"manubrium), which fits {best.anatomy} better by {cue.gain:.1f} nats")
    elif best.anatomy == LOST_BODY_READING:
        # Always in doubt, and nothing else to say: the column holds one body fewer than the
        # names assume.
        notes.append(f"{UNCERTAIN_NOTE}: the vertebra above L2 bears ribs, so the names assume a lumbar "
                     f"body lost in the segmentation between it and L2 (a collapsed {LOST_LEVEL} can run into "
                     f"its neighbours): review {LOST_LEVEL}")
    else:
        if best.anatomy != ANATOMY[0][0]:
            notes.append(f"transitional anatomy read: {best.anatomy}")
        if margin < UNCERTAIN_MARGIN:
            rival_top = next((name for name in rival.names if name), "")
            notes.append(f"{UNCERTAIN_NOTE}: {rival.anatomy} with the top vertebra {rival_top} "
                         f"fits nearly as well (margin {margin:.1f})")
        elif best.anatomy == ANATOMY[0][0] and any(name.startswith("T") for name in best.names):
            # With the sacrum, the top of the thoracic spine out of view; without it, either
            # end of it (T1 and the body above it, or the last rib-bearing body and the one
            # below): the ribs then fit 11, 12 and 13 pairs alike and the prior alone chose.
            unseen = unseen_rib_counts(found)
            read = count_read_at_top(found, unseen, top) if unseen and top is not None else None
            if read is not None:
                notes.append(f"{COUNT_AT_TOP_NOTE}: the ribs fit {' or '.join(unseen)} as well, and the bone around "
                             f"the top vertebrae (first rib, clavicles, manubrium) fits the usual 12 better by "
                             f"{read:.1f} nats")
            elif unseen:
                notes.append(f"{UNSEEN_COUNT_NOTE}: {' or '.join(unseen)} would fit the image as well, "
                             "and would shift every thoracic name by one (the names assume the usual 12)")
    names = list(best.names)
    evidence = body_evidence(rib, np.asarray(first_rib, dtype=float), cut)
    disagree = sum(1 for i, name in enumerate(names)
                   if name and (evidence[i] < -CONFLICT_NATS if name.startswith("T") else evidence[i] > CONFLICT_NATS))
    if disagree:
        notes.append(f"the ribs seen disagree with the levels named at {disagree} vertebra{'e' if disagree > 1 else ''}")
    return names, _anchors(names, ribs_seen, has_sacrum), notes


def _anchors(names: list[str], ribs_seen: bool, has_sacrum: bool) -> str:
    """Which anchors named the levels (see :attr:`LevelResult.anchor`)."""
    parts = []
    if ribs_seen and any(name.startswith("T") for name in names):
        parts.append("ribs")
        if any(name.startswith("C") for name in names):
            parts.append("cervical")
    if has_sacrum:
        parts.append("sacrum")
    return "+".join(parts) or "none"


def sacrum_top(class_map: np.ndarray, spacing_mm: np.ndarray) -> tuple[Component | None, float | None]:
    """The S1 slab of the largest sacrum component, and the sacrum's top (axis0 index)."""
    found = components(class_map == SACRUM, spacing_mm, MIN_BODY_MM3, 1)
    if not found:
        return None, None
    sacrum = found[0]
    # The top is the highest row with a substantial cross-section (axis0 runs to Superior):
    # thin spurs of sacrum class reaching up along L5 must not move it.
    area = sacrum.local_mask.sum(axis=(1, 2))
    rows = np.flatnonzero(area >= 0.3 * area.max())
    top_local = int(rows.max())
    slab_voxels = max(1, round(S1_SLAB_MM / float(spacing_mm[0])))
    slab = sacrum.local_mask.copy()
    slab[: max(0, top_local - slab_voxels + 1)] = False
    offset = np.array([b.start for b in sacrum.box], dtype=float)
    top = float(sacrum.box[0].start + top_local)
    return Component(np.argwhere(slab).mean(axis=0) + offset, sacrum.box, slab), top


def top_vertebrae(
    bodies: list[ColumnBody], cut: np.ndarray, column: Column, bone: BonePoints, spacing_mm: np.ndarray,
    model: TopLevelModel | None,
) -> tuple[list[TopBody], np.ndarray | None]:
    """The top :data:`~.top_levels.TOP_BODIES` whole vertebrae (found, not cut by the scan) with
    their cue features, and the cue terms per body for :func:`name_levels` (NaN rows for the
    bodies not looked at; None without a model)."""
    whole = [i for i, b in enumerate(bodies) if b.component is not None and not cut[i]][:TOP_BODIES]
    voxel_mm3 = float(np.prod(spacing_mm))
    terms = np.full((len(bodies), len(TOP_CLASSES)), np.nan) if model is not None else None
    found = []
    for i in whole:
        centroid = bodies[i].component.centroid
        along = float(column.offsets(np.round(centroid)[None].astype(int), spacing_mm)[0][0])
        x = top_features(bone.along, bone.posterior, bone.lateral, along, voxel_mm3)
        body_terms = model.terms(x)[0] if model is not None else None
        if terms is not None:
            terms[i] = body_terms
        found.append(TopBody(np.asarray(centroid, dtype=float), x, body_terms))
    return found, terms


def label_levels(
    class_map: np.ndarray,
    spacing_mm: np.ndarray,
    body_probability: np.ndarray | None = None,
    volume: np.ndarray | None = None,
    bone_level: float | None = None,
    top_model: TopLevelModel | None = None,
) -> LevelResult:
    """Find, order and name the vertebral bodies (and S1) of one study's class map.

    ``volume`` (the model input the class map came from) and ``bone_level`` (its value at
    :data:`RIB_BONE_HU`), when given, supply the rib evidence from the image; without them
    the segmentation's rib-head class does. ``body_probability`` (the body channel of the
    softmax, same grid), when given, recovers weakly segmented bodies by hysteresis (see
    :func:`body_mask`). ``top_model``, with the image, reads the top vertebrae for where the
    thoracic spine begins (see :mod:`.top_levels`); without it the ribs and the sacrum name
    the levels alone."""
    spacing_mm = np.asarray(spacing_mm, dtype=float)
    notes: list[str] = []
    bodies, column, sacrum_s = column_bodies(class_map, spacing_mm, body_probability)
    s1, _top = sacrum_top(class_map, spacing_mm)
    if s1 is not None and sacrum_s is None and column is not None and bodies:
        s1_s = column.offsets(np.round(s1.centroid)[None].astype(int), spacing_mm)[0][0]
        if any(b.component is not None and b.s_range[1] <= s1_s for b in bodies):
            s1 = None  # a vertebral body lies below it (see BENEATH_SACRUM_MM3)
            notes.append("the sacrum class lies above vertebral bodies: it is not the sacrum, and the levels "
                         "are named without it")
    has_sacrum = s1 is not None and sacrum_s is not None
    missed = sum(b.component is None for b in bodies)
    if missed:
        notes.append(f"{missed} vertebral bod{'y' if missed == 1 else 'ies'} missed by the segmentation "
                     "counted from the spacing of the column but not measured")
    bone = None
    top: list[TopBody] = []
    top_terms = None
    if volume is not None and bone_level is not None and column is not None:
        bone = bone_points(column, volume, spacing_mm, bone_level)
        neck, first = image_rib_volumes(bodies, column, volume, spacing_mm, bone_level, bone=bone)
        rib, first_rib = rib_evidence(neck, RIB_MIDPOINT_MM3), rib_evidence(first, FIRST_RIB_MIDPOINT_MM3)
        # A body the scan cuts says nothing about its ribs: they may lie beyond the last slice
        # (a cut T1), or the next body's ribs may lie in its bands (a cut C7 above T1's first rib).
        cut = cut_by_scan(bodies, volume)
        rib[cut] = first_rib[cut] = 0.0
        if bone is not None:
            top, top_terms = top_vertebrae(bodies, cut, column, bone, spacing_mm, top_model)
    else:
        cut = np.zeros(len(bodies), dtype=bool)
        if column is not None:
            _rib_scores(bodies, class_map, column, spacing_mm)
        rib = rib_evidence(np.array([b.rib_score for b in bodies]), CLASS_MAP_RIB_MIDPOINT_MM3)
        first_rib = rib
    names, anchor, naming_notes = name_levels(rib, first_rib, has_sacrum, cut, top_terms)
    # Where the top vertebrae moved the names, the first rib's neck (next) is not asked again:
    # both look at the top of the column, and the cue was judged on its own.
    cue_decided = top_terms is not None and names != name_levels(rib, first_rib, has_sacrum, cut)[0]
    close_call = any(n.startswith(UNCERTAIN_NOTE) for n in naming_notes) or NO_SACRUM_TIE_NOTE in naming_notes
    if volume is not None and bone_level is not None and close_call and not cue_decided:
        # A close call at the top of the column: the first-rib band of the body above T1 can
        # hold the top of T1's first rib, which rises to the disc between them. Where the first
        # rib's neck lies says which body bears it; band bone above that body is its rib.
        # The names stay reported uncertain: the neck's position decides between two readings
        # the volumes could not, it does not make either more certain. Without the sacrum the
        # same band bone can leave two readings that both call C7 T1 tied (12 pairs ending one
        # body early, and 13 pairs), and a tie leaves the whole column unnamed, every fracture
        # in it unreported: the neck decides there too.
        owner = first_rib_owner(bodies, column, volume, spacing_mm, bone_level, bone=bone)
        above = [i for i in range(owner or 0) if first_rib[i] > rib[i] and first_rib[i] > 0]
        if above:
            discounted = first_rib.copy()
            discounted[above] = rib[above]
            renamed, renamed_anchor, renamed_notes = name_levels(rib, discounted, has_sacrum, cut)
            if renamed != names and renamed[owner] == "T1":  # the neck's body must come out as T1
                names, anchor, first_rib = renamed, renamed_anchor, discounted
                decided = (f"{UNCERTAIN_NOTE}: the bone beside the vertebrae fits a naming one level off "
                           f"nearly as well; the names follow the first rib's neck, which lies beside {names[owner]}")
                naming_notes = [note for note in renamed_notes if not note.startswith(UNCERTAIN_NOTE)] + [decided]
    notes += naming_notes
    if not any(names) and not naming_notes:
        notes.append("neither ribs nor sacrum found: levels cannot be named")
    unnamed = sum(1 for name in names if not name)  # the note counts the missed bodies the column holds too
    if unnamed and anchor != "none":
        notes.append(f"{unnamed} bod{'y' if unnamed == 1 else 'ies'} above the known levels left unnamed")
    shape = tuple(class_map.shape)
    vertebrae = [
        LabelledVertebra(name, b.component.centroid, b.component.box, b.component.local_mask, shape,
                         rib_bearing=bool(evidence > 0), cut_by_scan=bool(is_cut))
        for name, b, evidence, is_cut in zip(names, bodies, body_evidence(rib, first_rib, cut), cut)
        if name and b.component is not None
    ]
    if s1 is not None and s1.local_mask.any():
        vertebrae.append(LabelledVertebra("S1", s1.centroid, s1.box, s1.local_mask, shape))
    found_unnamed = sum(1 for name, b in zip(names, bodies) if not name and b.component is not None)
    return LevelResult(vertebrae=vertebrae, anchor=anchor, notes=notes, top=top, unnamed=found_unnamed)
