"""Screening metrics against phantom truth: how well vcfscreen finds, names and grades.

:func:`evaluate_folder` screens phantom studies and returns an :class:`EvaluationReport`
(level identification, also per anatomy of the true spine; fracture detection per vertebra
and per study; false positives by confounder; unanalysable share; Dice; height-loss error by
true morphology; runtime) with the project's targets beside the figures. The math lives in
plain functions (:mod:`.matching`, :mod:`.metrics`, :mod:`.dice`, :mod:`.confounders`);
:mod:`.study` judges one study, :mod:`.report` adds up.
"""

from engine.evaluate.report import TARGETS, EvaluationReport, build_report
from engine.evaluate.runner import evaluate_folder, evaluate_results, read_results
from engine.evaluate.study import StudyEvaluation, evaluate_study
from engine.evaluate.truth import StudyTruth, TruthFileError, load_truth, study_folders

__all__ = [
    "TARGETS",
    "EvaluationReport",
    "StudyEvaluation",
    "StudyTruth",
    "TruthFileError",
    "build_report",
    "evaluate_folder",
    "evaluate_results",
    "evaluate_study",
    "load_truth",
    "read_results",
    "study_folders",
]
