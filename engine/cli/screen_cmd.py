"""``vcfscreen screen``: screen study folders in-process (the embedded default).

Every study gets one ScreeningResult line, written and flushed as soon as it is screened;
a study that cannot be screened gets its line with status ``not_eligible`` or ``error`` and
the run goes on. Progress and the final summary go to standard error, so ``--out -`` can
be piped. The exit code is 0 whenever the run happened, 2 for usage errors (a path that
does not exist, a bad option, models that cannot be loaded), 130 when interrupted.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from engine.cli.config_cmd import load_settings
from engine.errors import ConfigurationError
from engine.logs import setup_logging, study_ref
from engine.report.jsonl import ResultWriter
from engine.report.summary import RunSummary
from engine.settings import InferenceBackend, Settings

if TYPE_CHECKING:
    from engine.screen import Screener, StudyOutput

log = logging.getLogger(__name__)

NOT_STUDY_FILES = frozenset({"truth.json", "labels.npz"})
"""Files beside a study's DICOM that do not make a folder a study (phantom ground truth)."""
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-]+:(\d{1,5})$|^\[[0-9A-Fa-f:]+\]:(\d{1,5})$")
USAGE_ERROR = 2


class UsageError(Exception):
    """A mistake on the command line; the message says what to change."""


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def is_study_folder(folder: Path) -> bool:
    """A folder that directly holds files (besides ground truth and hidden files) is a study."""
    return any(
        entry.is_file() and _visible(entry) and entry.name not in NOT_STUDY_FILES
        for entry in folder.iterdir()
    )


def discover_studies(paths: Sequence[Path]) -> list[Path]:
    """The study folders named by the PATH arguments, in argument order.

    A PATH that directly holds files is one study; otherwise each visible immediate
    sub-folder is one study, by name order (``vcfscreen phantom OUT`` writes
    ``OUT/<StudyInstanceUID>/``). A PATH with neither is kept as one (empty) study, which
    gets a ``not_eligible`` line. A file PATH is a study of that one file.
    """
    studies: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path} does not exist: give a study folder or a folder of study folders")
        if path.is_file() or is_study_folder(path):
            studies.append(path)
            continue
        children = sorted(p for p in path.iterdir() if p.is_dir() and _visible(p))
        studies.extend(children or [path])
    return studies


def apply_options(settings: Settings, backend: InferenceBackend | None, triton_url: str | None) -> Settings:
    """Settings with the command-line overrides; a malformed URL is a usage error."""
    if backend is not None:
        settings.models = settings.models.model_copy(update={"backend": backend})
    if triton_url is not None:
        match = _HOST_PORT.match(triton_url)
        port = int(next(g for g in match.groups() if g)) if match else 0
        if not match or not 0 < port < 65536:
            raise UsageError(f"--triton-url {triton_url!r} must be HOST:PORT, e.g. triton:8001")
        settings.triton = settings.triton.model_copy(update={"url": triton_url})
    return settings


def build_screener(settings: Settings) -> Screener:
    """The Screener, or a usage error saying which model or module is missing."""
    from engine.screen import Screener

    try:
        return Screener(settings)
    except ConfigurationError as exc:
        raise UsageError(f"cannot load the models: {exc.message}") from None
    except ModuleNotFoundError as exc:
        if settings.models.backend == InferenceBackend.TRITON:
            if exc.name == "engine.infer.triton_backend":
                raise UsageError(
                    "the Triton backend (engine.infer.triton_backend) is not part of this build "
                    "yet; use --backend onnxruntime"
                ) from None
            raise UsageError(f"the Triton backend needs the Python module {exc.name!r}, which is not installed") from None
        raise


def _configure_logging(settings: Settings, console: Console, verbose: bool) -> None:
    """Log lines above the progress bar; WARNING unless --verbose or VCF_LOGGING__LEVEL asks."""
    setup_logging(settings.logging)  # UID policy of study_ref, quiet client libraries
    explicit = "VCF_LOGGING__LEVEL" in os.environ
    level = settings.logging.level if explicit else ("INFO" if verbose else "WARNING")
    root = logging.getLogger()
    root.setLevel(level)
    if not settings.logging.json_format:
        root.handlers[:] = [RichHandler(console=console, show_path=False, markup=False)]


def summary_table(summary: RunSummary, interrupted: bool = False) -> Table:
    title = "vcfscreen screen: interrupted" if interrupted else "vcfscreen screen"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    for label, value in summary.rows():
        table.add_row(label, value)
    return table


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]screening"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[current]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


def _write_outputs(output: StudyOutput, study: Path, key_images: Path | None, sr_dir: Path | None, summary: RunSummary) -> None:
    """Key image and SR of an ok study; a failure is logged and counted, never raised."""
    from engine.report.keyimage import key_image_path, render_key_image
    from engine.report.sr import SourceSeries, write_sr

    result = output.result
    ref = study_ref(result.study_instance_uid)
    if key_images is not None:
        try:
            render_key_image(result, output.model_input, key_image_path(key_images, result))
            summary.key_images_written += 1
        except Exception as exc:  # noqa: BLE001 - a side output must not stop the run
            summary.key_image_failures += 1
            log.warning("%s: key image not written: %s: %s", ref, type(exc).__name__, exc)
    if sr_dir is not None:
        try:
            source = SourceSeries.from_folder(study, result.series_instance_uid or "")
            write_sr(result, source, sr_dir)
            summary.srs_written += 1
        except Exception as exc:  # noqa: BLE001 - a side output must not stop the run
            summary.sr_failures += 1
            log.warning("%s: DICOM SR not written: %s: %s", ref, type(exc).__name__, exc)


def run_screen(
    studies: list[Path],
    screener: Screener,
    writer: ResultWriter,
    console: Console,
    summary: RunSummary,
    key_images: Path | None = None,
    sr_dir: Path | None = None,
) -> RunSummary:
    """Screen every study in order, one flushed line each, counting into ``summary``.

    KeyboardInterrupt propagates; ``summary`` then holds the studies done so far.
    """
    with _progress(console) as progress:
        task = progress.add_task("screen", total=len(studies), current="")
        for study in studies:
            progress.update(task, current=study_ref(study.name))
            start = time.perf_counter()
            output = screener.screen(study, study_hint=study.name)
            seconds = time.perf_counter() - start
            writer.write(output.result)
            summary.add(output.result, seconds)
            if output.result.status == "ok":
                _write_outputs(output, study, key_images, sr_dir, summary)
            progress.advance(task)
        progress.update(task, current="")
    return summary


def register(app: typer.Typer) -> None:
    @app.command("screen")
    def screen(
        paths: Annotated[list[Path], typer.Argument(
            help="Study folders, or folders of study folders (one sub-folder per study).",
            show_default=False, metavar="PATH",
        )],
        out: Annotated[str, typer.Option("--out", "-o", help="Results file (JSON lines), or - for standard output.")],
        key_images: Annotated[Path | None, typer.Option(
            "--key-images", help="Write a sagittal key image DIR/<StudyInstanceUID>.png per screened study."
        )] = None,
        sr: Annotated[Path | None, typer.Option(
            "--sr", help="Write a DICOM Comprehensive 3D SR DIR/<StudyInstanceUID>.dcm per screened study."
        )] = None,
        backend: Annotated[InferenceBackend | None, typer.Option(
            "--backend", case_sensitive=False,
            help="onnxruntime (in-process) or triton (default: VCF_MODELS__BACKEND).",
        )] = None,
        triton_url: Annotated[str | None, typer.Option(
            "--triton-url", help="Triton gRPC endpoint HOST:PORT (default: VCF_TRITON__URL)."
        )] = None,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each study's progress (INFO).")] = False,
    ) -> None:
        """Screen CT studies for vertebral compression fractures; one result line per study."""
        console = Console(stderr=True)
        settings = load_settings()
        try:
            settings = apply_options(settings, backend, triton_url)
            studies = discover_studies(paths)
            for folder, option in ((key_images, "--key-images"), (sr, "--sr")):
                if folder is not None and folder.exists() and not folder.is_dir():
                    raise UsageError(f"{option} {folder} is a file; give a folder")
            _configure_logging(settings, console, verbose)
            screener = build_screener(settings)
        except UsageError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(code=USAGE_ERROR) from None
        writer = ResultWriter(out)
        try:
            writer.open()
        except OSError as exc:
            typer.echo(f"Error: cannot write the results file {out}: {exc.strerror}", err=True)
            raise typer.Exit(code=USAGE_ERROR) from None
        summary = RunSummary()
        try:
            run_screen(studies, screener, writer, console, summary, key_images, sr)
        except KeyboardInterrupt:
            console.print(summary_table(summary, interrupted=True))
            console.print(f"interrupted: {writer.lines} of {len(studies)} result lines were written to {out}")
            raise typer.Exit(code=130) from None
        finally:
            writer.close()
        console.print(summary_table(summary))
