"""Two evaluations of the same studies side by side: what a change did, and to which studies.

A model or labelling change is judged on studies screened twice, once before and once after.
Two separate reports answer "how good is each"; their 95% intervals overlap for any change a
50-study set can measure. The paired view is what decides: the figures recomputed on the
studies both reports hold, and the studies whose level names, fracture calls or study flag
moved. One study fixed and one broken read as "no change" in the totals and as two changes
here.

Studies are paired by StudyInstanceUID; a study in only one report is counted, not compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.evaluate.report import EvaluationReport, build_report
from engine.evaluate.study import FRACTURE_GRADE, StudyEvaluation


@dataclass(frozen=True)
class FigureChange:
    label: str
    before: float | None
    after: float | None
    kind: str = "count"
    """count, share or score: how the figure is printed."""
    better_when: str = "higher"
    """higher or lower: which way is an improvement."""

    @property
    def verdict(self) -> str:
        """better, worse or same (same when either side is missing)."""
        if self.before is None or self.after is None or self.before == self.after:
            return "same"
        up = self.after > self.before
        return "better" if up == (self.better_when == "higher") else "worse"


@dataclass(frozen=True)
class CallChange:
    """One true vertebra whose fracture call (grade >= 2 or not) or grade moved."""

    true_level: str
    true_grade: int
    before: int | None
    after: int | None

    @property
    def verdict(self) -> str:
        """better or worse at the grade >= 2 decision; 'grade' when only the grade moved."""
        truth = self.true_grade >= FRACTURE_GRADE
        right_before = ((self.before or 0) >= FRACTURE_GRADE) == truth
        right_after = ((self.after or 0) >= FRACTURE_GRADE) == truth
        if right_before == right_after:
            return "grade"
        return "better" if right_after else "worse"


@dataclass(frozen=True)
class StudyChange:
    """A study where something moved. ``calls`` and the unmatched counts compare two
    screenings, so they are left empty when either side was not analysed: a study that failed
    has no calls to compare, only its status change."""

    uid: str
    true_vertebrae: int
    correct_before: int
    correct_after: int
    flag_before: bool | None
    flag_after: bool | None
    true_flag: bool
    calls: tuple[CallChange, ...]
    status_before: str
    status_after: str
    unmatched_before: int = 0
    """Grade >= 2 calls on predictions that identify no true vertebra (false positives)."""
    unmatched_after: int = 0


@dataclass(frozen=True)
class Comparison:
    shared: int
    only_before: int
    only_after: int
    figures: tuple[FigureChange, ...]
    studies: tuple[StudyChange, ...]
    """Only the studies where something moved, in the order of the later report."""

    def count(self, what: str, verdict: str) -> int:
        """Studies whose ``what`` ('levels', 'flag') or vertebrae ('calls') moved ``verdict``."""
        if what == "levels":
            return sum((s.correct_after > s.correct_before) == (verdict == "better")
                       for s in self.studies if s.correct_after != s.correct_before)
        if what == "flag":
            return sum((s.flag_after == s.true_flag) == (verdict == "better")
                       for s in self.studies if s.flag_after != s.flag_before)
        moved = sum(c.verdict == verdict for s in self.studies for c in s.calls)
        return moved + sum(max(0, (s.unmatched_before - s.unmatched_after) * (1 if verdict == "better" else -1))
                           for s in self.studies)


def _calls(before: StudyEvaluation, after: StudyEvaluation) -> tuple[CallChange, ...]:
    """Per true vertebra (by its level in the truth), the predicted grades that differ."""
    old = {p.true_level: p for p in before.pairs if p.true_level is not None}
    moved = []
    for p in after.pairs:
        if p.true_level is None or p.true_grade is None:
            continue
        q = old.get(p.true_level)
        grade_before = q.predicted_grade if q is not None else None
        if grade_before != p.predicted_grade:
            moved.append(CallChange(p.true_level, p.true_grade, grade_before, p.predicted_grade))
    return tuple(moved)


def _unmatched_calls(study: StudyEvaluation) -> int:
    return sum(p.true_level is None and (p.predicted_grade or 0) >= FRACTURE_GRADE for p in study.pairs)


def _figures(before: EvaluationReport, after: EvaluationReport) -> tuple[FigureChange, ...]:
    def threshold(report: EvaluationReport, grade: int):
        return next(t for t in report.fracture.thresholds if t.threshold == grade)

    b2, a2, b3, a3 = threshold(before, 2), threshold(after, 2), threshold(before, 3), threshold(after, 3)
    return (
        FigureChange("correct level names", before.identification.correct_level, after.identification.correct_level),
        FigureChange("level identification", before.identification.level_identification,
                     after.identification.level_identification, "share"),
        FigureChange("vertebrae detected", before.identification.detected, after.identification.detected),
        FigureChange("grade >= 2 true positives", b2.tp, a2.tp),
        FigureChange("grade >= 2 false negatives", b2.fn, a2.fn, better_when="lower"),
        FigureChange("grade >= 2 false positives", b2.fp, a2.fp, better_when="lower"),
        FigureChange("grade 3 true positives", b3.tp, a3.tp),
        FigureChange("study flag false negatives", before.flag.fn, after.flag.fn, better_when="lower"),
        FigureChange("study flag false positives", before.flag.fp, after.flag.fp, better_when="lower"),
        FigureChange("AUC, grade >= 2", before.fracture.auc_grade2, after.fracture.auc_grade2, "score"),
        FigureChange("Dice, vertebral bodies (mean)", before.dice.mean_bodies_dice, after.dice.mean_bodies_dice,
                     "score"),
        FigureChange("runtime per study, median (s)", before.runtime.median_s, after.runtime.median_s, "score",
                     better_when="lower"),
    )


def compare(before: EvaluationReport, after: EvaluationReport) -> Comparison:
    """The paired comparison of two reports (earlier first) on the studies both hold."""
    old = {e.study_instance_uid: e for e in before.per_study}
    new = {e.study_instance_uid: e for e in after.per_study}
    shared = [uid for uid in new if uid in old]
    changes = []
    for uid in shared:
        b, a = old[uid], new[uid]
        both = b.analysed and a.analysed
        calls = _calls(b, a) if both else ()
        unmatched = (_unmatched_calls(b), _unmatched_calls(a)) if both else (0, 0)
        if (b.correct_level != a.correct_level or b.predicted_flag != a.predicted_flag or calls
                or unmatched[0] != unmatched[1] or b.status != a.status):
            changes.append(StudyChange(
                uid=uid, true_vertebrae=a.true_vertebrae, correct_before=b.correct_level,
                correct_after=a.correct_level, flag_before=b.predicted_flag, flag_after=a.predicted_flag,
                true_flag=a.true_flag, calls=calls, status_before=b.status, status_after=a.status,
                unmatched_before=unmatched[0], unmatched_after=unmatched[1],
            ))
    return Comparison(
        shared=len(shared),
        only_before=sum(uid not in new for uid in old),
        only_after=sum(uid not in old for uid in new),
        figures=_figures(_subset(before, shared), _subset(after, shared)),
        studies=tuple(changes),
    )


def _subset(report: EvaluationReport, uids: Sequence[str]) -> EvaluationReport:
    """The report rebuilt on ``uids`` only, so both sides count the same studies. The Dice
    note is kept: a report read from results has none to rebuild."""
    wanted = set(uids)
    return build_report([e for e in report.per_study if e.study_instance_uid in wanted], report.source,
                        dice_note=report.dice.note, intervals=False)
