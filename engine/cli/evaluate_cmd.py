"""``vcfscreen evaluate``: screen phantom studies and measure the screening against their truth."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from engine.cli.config_cmd import load_settings
from engine.errors import ConfigurationError


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        phantom_dirs: list[Path] = typer.Argument(
            ..., help="Phantom study folders, or folders of them (each study with truth.json); the studies "
                      "of several are pooled into one report."),
        out: Path | None = typer.Option(None, "--out", "-o", help="Write the full report (every study) as JSON here."),
        results: Path | None = typer.Option(
            None, "--results",
            help="An existing results.jsonl is evaluated instead of screening (every figure but Dice, "
                 "which needs the model-grid output of a screening in the same run); a path that does "
                 "not exist yet receives the results of this run's screening.",
        ),
        limit: int | None = typer.Option(None, "--limit", min=1, help="Evaluate only the first N studies (name order)."),
        against: Path | None = typer.Option(
            None, "--against",
            help="An earlier report (--out JSON) of the same studies: print what changed, figure by figure "
                 "and study by study.",
        ),
    ) -> None:
        """Screen every phantom study and print level identification, fracture detection,
        false positives by confounder, unanalysable share, Dice and runtime, beside the targets."""
        from engine.evaluate import TruthFileError, evaluate_folder, evaluate_results
        from engine.evaluate.compare import compare
        from engine.evaluate.report import EvaluationReport
        from engine.evaluate.table import comparison_renderable, report_renderable
        from engine.logs import setup_logging, study_ref

        missing = [str(path) for path in phantom_dirs if not path.exists()]
        if missing:
            typer.echo(f"{', '.join(missing)} does not exist" if len(missing) == 1
                       else f"{', '.join(missing)} do not exist", err=True)
            raise typer.Exit(code=2)
        earlier = None
        if against is not None:  # read before screening: a bad file should not cost a run
            try:
                earlier = EvaluationReport.model_validate_json(against.read_text(encoding="utf-8"))
            except OSError as exc:
                typer.echo(f"cannot read the earlier report {against}: {exc.strerror or exc}", err=True)
                raise typer.Exit(code=2) from None
            except ValueError as exc:
                first = str(exc).splitlines()[0]
                typer.echo(f"{against} is not a vcfscreen evaluate report (--out JSON): {first}", err=True)
                raise typer.Exit(code=2) from None
        settings = load_settings()
        setup_logging(settings.logging)
        console = Console()
        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        read_only = results is not None and results.exists()

        with progress:
            task = progress.add_task("reading results" if read_only else "screening", total=None, note="")

            def advance(done: int, total: int, evaluation) -> None:
                progress.update(task, total=total, completed=done, note=evaluation.status)

            try:
                if read_only:
                    report = evaluate_results(phantom_dirs, results, limit=limit, on_study=advance)
                else:
                    report = evaluate_folder(phantom_dirs, settings, limit=limit, on_study=advance,
                                             results_out=results)
            except TruthFileError as exc:
                progress.stop()
                typer.echo(str(exc), err=True)
                raise typer.Exit(code=2) from None
            except ConfigurationError as exc:
                progress.stop()
                typer.echo(f"cannot load the models: {exc.message}", err=True)
                raise typer.Exit(code=2) from None

        console.print(report_renderable(report))
        if earlier is not None:
            console.print(comparison_renderable(compare(earlier, report), study_ref))
        if read_only:
            console.print(f"results read from {results}; Dice needs a screening in the same run")
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
            console.print(f"full report written to {out}")
