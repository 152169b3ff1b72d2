"""The evaluation report as rich tables for the terminal: each figure beside its target."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group
from rich.table import Table

from engine.evaluate.compare import Comparison
from engine.evaluate.report import EvaluationReport


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _target_cell(report: EvaluationReport, figure: str) -> str:
    """The target beside its figure; whether it is met is the targets table's to say, with the
    interval that decides it."""
    check = next((t for t in report.targets if t.figure == figure), None)
    if check is None:
        return ""
    return f">= {check.target:.2f}" if figure.startswith("auc") else f">= {100 * check.target:.0f}%"


def _verdict_cell(verdict: str) -> str:
    colour = "yellow" if verdict.endswith("within noise") else ("green" if verdict == "met" else "red")
    return f"[{colour}]{verdict}[/{colour}]"


def summary_table(report: EvaluationReport) -> Table:
    """Headline figures: studies, identification, fracture detection, flag, Dice, runtime."""
    table = Table(title=f"vcfscreen evaluation of {report.source}", show_lines=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("counts", justify="right")
    table.add_column("target", justify="right")

    def row(label: str, value: str, counts: str = "", figure: str | None = None) -> None:
        table.add_row(label, value, counts, _target_cell(report, figure) if figure else "")

    s, ident, frac = report.studies, report.identification, report.fracture
    row("studies analysed", f"{s.analysed} / {s.valid}",
        f"{s.error} error, {s.not_eligible} not eligible")
    if s.spine_not_read:
        row("  spine not read by the models", str(s.spine_not_read), "analysed: their vertebrae all missed")
    row("unanalysable share", _pct(s.unanalysable_share), f"{s.fractures_in_unanalysable} fractures in them")
    if s.missing_results:
        row("studies without a result line", str(s.missing_results), "not counted")
    table.add_section()
    row(f"vertebra detection (<= {ident.match_radius_mm:g} mm)", _pct(ident.detection_rate),
        f"{ident.detected} / {ident.true_vertebrae}")
    row("level identification", _pct(ident.level_identification),
        f"{ident.correct_level} / {ident.true_vertebrae}", "level_identification")
    if any(a.anatomy != "typical" for a in ident.by_anatomy):
        for a in ident.by_anatomy:
            row(f"  level identification, {a.anatomy} spines", _pct(a.level_identification),
                f"{a.correct_level} / {a.true_vertebrae} in {a.studies} stud{'y' if a.studies == 1 else 'ies'}")
    row("one-level shifts", str(ident.one_level_shifts), f"{ident.larger_shifts} larger")
    row("names reported in doubt", f"{ident.studies_in_doubt} studies",
        f"{ident.misnamed_in_doubt} of {ident.misnamed} misnamed in them")
    row("false detections", str(ident.false_detections), f"{ident.ignored_partial_bodies} on partial bodies ignored")
    table.add_section()
    row("AUC, grade >= 1", _num(frac.auc_grade1), f"{frac.auc_pairs} pairs")
    row("AUC, grade >= 2", _num(frac.auc_grade2), f"{frac.auc_pairs} pairs", "auc_grade2")
    for t in frac.thresholds:
        name = "grade 3" if t.threshold == 3 else f"grade >= {t.threshold}"
        row(f"sensitivity, {name}", _pct(t.sensitivity), f"TP {t.tp} FN {t.fn}",
            f"sensitivity_grade{t.threshold}")
        row(f"PPV, {name}", _pct(t.ppv), f"TP {t.tp} FP {t.fp}", f"ppv_grade{t.threshold}")
    row("missed fractures (grade >= 2, not detected)", str(frac.missed_fractures))
    table.add_section()
    f = report.flag
    row("study flag sensitivity", _pct(f.sensitivity), f"TP {f.tp} FN {f.fn}")
    row("study flag specificity", _pct(f.specificity), f"TN {f.tn} FP {f.fp}")
    table.add_section()
    d = report.dice
    if d.studies:
        row("Dice, vertebral bodies (mean)", _num(d.mean_bodies_dice), f"{d.studies} studies, min {_num(d.min_bodies_dice)}")
        row("Dice, per vertebra (mean)", _num(d.mean_vertebra_dice), f"{d.vertebra_pairs} pairs")
    else:
        row("Dice", "n/a", d.note or "")
    if report.height_loss:
        table.add_section()
        for e in report.height_loss:
            kind = "normal bodies" if e.morphology == "none" else e.morphology
            row(f"height loss error, {kind} (median)", f"{e.median_error:+.3f}",
                f"{e.bodies} bodies, mean abs {e.mean_absolute_error:.3f}")
    table.add_section()
    r = report.runtime
    row("runtime per study, median", _secs(r.median_s), f"{r.studies} studies")
    row("runtime per study, p95", _secs(r.p95_s))
    row("runtime, total", _secs(r.total_s))
    return table


def targets_table(report: EvaluationReport) -> Table:
    """Each target figure with its 95% interval and whether this set settles it."""
    table = Table(title="targets, with 95% intervals (the study as the unit of chance)")
    for name, justify in (("figure", "left"), ("value", "right"), ("95% interval", "right"),
                          ("target", "right"), ("", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for check in report.targets:
        auc_like = check.figure.startswith("auc")

        def shown(value: float | None, auc_like: bool = auc_like) -> str:
            return _num(value) if auc_like else _pct(value)

        interval = "n/a" if check.interval is None else f"{shown(check.interval[0])} - {shown(check.interval[1])}"
        target = f">= {check.target:.2f}" if auc_like else f">= {100 * check.target:.0f}%"
        table.add_row(check.label, shown(check.value), interval, target, _verdict_cell(check.verdict))
    table.caption = "within noise: the interval reaches across the target, so this set cannot settle it"
    return table


def confounder_table(report: EvaluationReport) -> Table:
    """False-positive fracture calls by the confounder they fall on."""
    fps = report.false_positives
    table = Table(title="false positives by confounder")
    table.add_column("fracture calls (grade >= 2) on a normal or absent vertebra")
    table.add_column("count", justify="right")
    for kind, count in fps.by_confounder.items():
        table.add_row(f"  {kind}", str(count))
    table.add_section()
    table.add_row("in all (one call may fall on several confounders)", str(fps.total))
    if fps.on_grade1:
        table.add_row("grade >= 2 on a true grade 1 (over-grading, not attributed)", str(fps.on_grade1))
    return table


def report_renderable(report: EvaluationReport) -> Group:
    """Everything the command prints."""
    return Group(summary_table(report), targets_table(report), confounder_table(report))


def _shown(value: float | None, kind: str) -> str:
    if value is None:
        return "n/a"
    return {"share": _pct, "score": _num}.get(kind, lambda v: str(int(v)))(value)


def _coloured(verdict: str, text: str) -> str:
    colour = {"better": "green", "worse": "red"}.get(verdict)
    return f"[{colour}]{text}[/{colour}]" if colour else text


def comparison_renderable(comparison: Comparison, study_name: Callable[[str], str]) -> Group:
    """The paired comparison: figures before and after on the shared studies, then every study
    where something moved (named by ``study_name``, which decides whether UIDs are shown)."""
    figures = Table(title=f"against the earlier report: {comparison.shared} studies in both")
    for name, justify in (("figure", "left"), ("before", "right"), ("after", "right"), ("", "left")):
        figures.add_column(name, justify=justify)  # type: ignore[arg-type]
    for f in comparison.figures:
        figures.add_row(f.label, _shown(f.before, f.kind), _shown(f.after, f.kind),
                        _coloured(f.verdict, f.verdict) if f.verdict != "same" else "")

    def moved(what: str, unit: str) -> str:
        better, worse = comparison.count(what, "better"), comparison.count(what, "worse")
        return f"{_many(better, unit)} better, {worse} worse"

    lines = [f"levels: {moved('levels', 'study')}; grade >= 2 calls: {moved('calls', 'vertebra')}; "
             f"study flag: {moved('flag', 'study')}" if comparison.studies else "no study changed"]
    if comparison.only_before or comparison.only_after:
        lines.append(f"not compared: {_many(comparison.only_before, 'study')} only in the earlier report, "
                     f"{comparison.only_after} only in this one")
    summary = "\n".join(lines)
    if not comparison.studies:
        return Group(figures, summary)
    studies = Table(title="studies that changed", show_lines=True)
    for name in ("study", "levels right", "study flag", "vertebrae whose grade moved (true grade: before -> after)"):
        studies.add_column(name)
    for s in comparison.studies:
        levels = f"{s.correct_before} -> {s.correct_after} of {s.true_vertebrae}"
        if s.correct_after != s.correct_before:
            levels = _coloured("better" if s.correct_after > s.correct_before else "worse", levels)
        if s.status_after != s.status_before:
            levels += f" ({s.status_before} -> {s.status_after})"
        flag = ""
        if s.flag_after != s.flag_before:
            flag = _coloured("better" if s.flag_after == s.true_flag else "worse",
                             f"{_yes(s.flag_before)} -> {_yes(s.flag_after)}")
        moved = [_coloured(c.verdict, f"{c.true_level} ({c.true_grade}): {_grade(c.before)} -> {_grade(c.after)}")
                 for c in s.calls]
        if s.unmatched_after != s.unmatched_before:
            moved.append(_coloured("better" if s.unmatched_after < s.unmatched_before else "worse",
                                   f"calls on no true vertebra: {s.unmatched_before} -> {s.unmatched_after}"))
        calls = ", ".join(moved)
        studies.add_row(study_name(s.uid), levels, flag, calls)
    return Group(figures, summary, studies)


def _many(count: int, unit: str) -> str:
    plural = {"study": "studies", "vertebra": "vertebrae"}[unit]
    return f"{count} {unit if count == 1 else plural}"


def _yes(flag: bool | None) -> str:
    return "n/a" if flag is None else ("flagged" if flag else "not flagged")


def _grade(grade: int | None) -> str:
    return "not found" if grade is None else str(grade)
