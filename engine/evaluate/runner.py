"""Running an evaluation: screen every phantom study (or read a results file) and judge it.

:func:`evaluate_folder` builds one :class:`~engine.screen.Screener` and screens each study
folder that holds a truth.json; it is what training calls to measure a model and what the
``vcfscreen evaluate`` command runs. Dice needs the model-grid output of the screening, so
it is only available when the studies are screened in the same run; :func:`evaluate_results`
judges a results.jsonl written earlier and reports every figure but Dice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from engine.evaluate.report import EvaluationReport, build_report
from engine.evaluate.study import StudyEvaluation, evaluate_study
from engine.evaluate.truth import (
    StudyTruth,
    TruthFileError,
    load_labels,
    load_truth,
    study_folders,
)
from engine.infer.base import InferenceBackend
from engine.logs import study_ref
from engine.results import ScreeningResult
from engine.settings import Settings

log = logging.getLogger(__name__)

StudyCallback = Callable[[int, int, StudyEvaluation], None]
"""Called after each study with (studies done, studies in all, its evaluation)."""

NO_DICE_FROM_FILE = "Dice not computed: results were read from a file, Dice needs the model-grid output of a screening in the same run"


Paths = Path | Sequence[Path]
"""One folder, or several whose studies are pooled into one report (sets made with different
seeds or settings: the intervals then rest on every study)."""


def _paths(path: Paths) -> list[Path]:
    return [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]


def _source(path: Paths) -> str:
    return " + ".join(str(p) for p in _paths(path))


def _studies(path: Paths, limit: int | None) -> list[tuple[Path, StudyTruth]]:
    """Each study folder under ``path`` with its truth, read once."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    folders: dict[Path, Path] = {}  # study folder -> the folder given that holds it
    for root in _paths(path):
        found = study_folders(root)
        if not found:
            raise TruthFileError(f"no study folder with a truth.json found under {root}")
        for folder in found:
            folders.setdefault(folder.resolve(), root)  # a folder given twice (however spelt) counts once
    chosen = list(folders)[:limit] if limit is not None else list(folders)
    seen: dict[str, Path] = {}
    studies = [(folder, load_truth(folder)) for folder in chosen]
    for folder, truth in studies:  # one study in two folders (a copy, or two sets made with one seed) would count twice
        uid = truth.study_instance_uid
        if uid in seen:
            # named by the folders given: a phantom's own folder is named by its StudyInstanceUID
            first, second = folders[seen[uid]], folders[folder]
            where = f"twice under {first}" if first == second else f"under both {first} and {second}"
            raise TruthFileError(f"the same study ({study_ref(uid)}) is {where}: its figures would count twice")
        seen[uid] = folder
    return studies


def evaluate_folder(
    path: Paths,
    settings: Settings,
    backend: InferenceBackend | None = None,
    limit: int | None = None,
    *,
    on_study: StudyCallback | None = None,
    results_out: Path | None = None,
) -> EvaluationReport:
    """Screen every study folder under ``path`` (one folder or several) and report the screening metrics.

    ``backend`` replaces the one the settings describe (tests, training's in-memory
    models); ``results_out`` also writes each ScreeningResult as a JSON line.
    """
    # The screening core pulls in DALI: imported only when screening.
    from engine.screen import Screener

    studies = _studies(path, limit)
    screener = Screener(settings, backend=backend)
    evaluations: list[StudyEvaluation] = []
    with ExitStack() as stack:
        sink = stack.enter_context(open(results_out, "w", encoding="utf-8")) if results_out else None
        for done, (folder, truth) in enumerate(studies, start=1):
            labels = load_labels(folder)
            start = time.perf_counter()
            output = screener.screen(folder, study_hint=truth.study_instance_uid)
            seconds = time.perf_counter() - start
            if output.result.status == "ok" and output.result.study_instance_uid != truth.study_instance_uid:
                log.warning("%s: the screened study is %s, not the one its truth.json names",
                            study_ref(truth.study_instance_uid), study_ref(output.result.study_instance_uid))
            evaluation = evaluate_study(truth, output.result, seconds=seconds, output=output, labels=labels)
            evaluations.append(evaluation)
            if sink is not None:
                sink.write(output.result.to_json_line() + "\n")
                sink.flush()
            del output, labels  # one study's volumes in memory at a time
            if on_study is not None:
                on_study(done, len(studies), evaluation)
    return build_report(evaluations, source=_source(path))


def read_results(results_file: Path) -> dict[str, ScreeningResult]:
    """Results by StudyInstanceUID; a later line for the same study replaces an earlier one."""
    results: dict[str, ScreeningResult] = {}
    with open(results_file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                result = ScreeningResult.from_json(line)
            except ValueError as exc:
                raise TruthFileError(f"{results_file} line {number} is not a ScreeningResult ({exc})") from None
            results[result.study_instance_uid] = result
    return results


def evaluate_results(
    path: Paths,
    results_file: Path,
    limit: int | None = None,
    *,
    on_study: StudyCallback | None = None,
) -> EvaluationReport:
    """Judge an existing results.jsonl against the truth under ``path`` (no Dice).

    Study times are the sums of each result's ``timings_ms`` (the screening stages, without
    the caller's overhead).
    """
    studies = _studies(path, limit)
    results = read_results(Path(results_file))
    evaluations: list[StudyEvaluation] = []
    missing = 0
    for done, (folder, truth) in enumerate(studies, start=1):
        result = results.get(truth.study_instance_uid)
        if result is None:
            missing += 1
            log.warning("%s has truth but no line in %s", study_ref(truth.study_instance_uid), results_file)
            continue
        seconds = sum(result.timings_ms.values()) / 1000.0 if result.timings_ms else None
        evaluation = evaluate_study(truth, result, seconds=seconds, labels=load_labels(folder))
        evaluations.append(evaluation.model_copy(update={"dice_note": None}))
        if on_study is not None:
            on_study(done, len(studies), evaluation)
    return build_report(evaluations, source=_source(path), dice_note=NO_DICE_FROM_FILE, missing_results=missing)
