"""``vcfscreen phantom``: write synthetic TAP CT studies with their truth."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TransferSyntax(str, Enum):
    explicit = "explicit"
    rle = "rle"
    jpegls = "jpegls"
    jpeg2000 = "jpeg2000"


def study_seed(seed: int, index: int) -> int:
    """The seed of study ``index`` of a run: distinct runs never share studies."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) | (int(state[1]) >> 1))


def _make_one(seed: int, config_json: str, out_dir: str, transfer_syntax: str) -> str:
    """Generate and write one study (runs in a worker process when --jobs > 1)."""
    from engine.phantom import PhantomConfig, generate_study, write_study

    config = PhantomConfig.model_validate_json(config_json)
    return str(write_study(generate_study(seed, config), out_dir, transfer_syntax=transfer_syntax))


def register(app: typer.Typer) -> None:
    @app.command("phantom")
    def phantom(
        out_dir: Annotated[Path, typer.Argument(help="Folder that receives one sub-folder per study.")],
        studies: Annotated[int, typer.Option("--studies", "-n", min=1, help="Number of studies to write.")] = 1,
        seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the run; the same seed writes the same studies.")] = 0,
        transfer_syntax: Annotated[TransferSyntax, typer.Option(
            "--transfer-syntax", help="Pixel encoding of the DICOM files (all lossless).")] = TransferSyntax.explicit,
        fast: Annotated[bool, typer.Option(
            "--fast", help="Small studies (128 matrix, 2.5-3 mm slices) for tests and training.")] = False,
        matrix: Annotated[int | None, typer.Option("--matrix", help="Rows and columns of the axial images.")] = None,
        slices_min: Annotated[int | None, typer.Option("--slices-min", help="Fewest slices of the screening series.")] = None,
        slices_max: Annotated[int | None, typer.Option("--slices-max", help="Most slices of the screening series.")] = None,
        fracture_probability: Annotated[float | None, typer.Option(
            "--fracture-probability", help="Share of studies with at least one fracture.")] = None,
        jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Studies generated in parallel processes.")] = 1,
        partial_volume_slices: Annotated[bool, typer.Option(
            "--partial-volume-slices",
            help="Average the anatomy over each slice's thickness, as a scanner does (painted on slices "
                 "at most 0.5 mm apart; slower). Off: slices painted at their centres, as the segmenter and the "
                 "classifier were trained on.",
        )] = False,
    ) -> None:
        """Write synthetic thoraco-abdomino-pelvic CT studies: OUT_DIR/<StudyInstanceUID>/*.dcm,
        truth.json and labels.npz."""
        from engine.phantom import PhantomConfig

        overrides = {key: value for key, value in (
            ("matrix", matrix), ("slices_min", slices_min), ("slices_max", slices_max),
            ("fracture_study_probability", fracture_probability)) if value is not None}
        if partial_volume_slices:
            overrides["partial_volume_slices"] = True
        try:
            config = PhantomConfig.fast(**overrides) if fast else PhantomConfig(**overrides)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
            typer.echo(f"invalid phantom options: {problems}", err=True)
            raise typer.Exit(code=2) from None
        out_dir.mkdir(parents=True, exist_ok=True)
        seeds = [study_seed(seed, i) for i in range(studies)]
        console = Console(stderr=True)
        columns = (TextColumn("phantom studies"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn())
        written: list[str] = []
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("phantom", total=studies)
            args = (config.model_dump_json(), str(out_dir), transfer_syntax.value)
            if jobs == 1:
                for one in seeds:
                    written.append(_make_one(one, *args))
                    progress.advance(task)
            else:
                with ProcessPoolExecutor(max_workers=jobs) as pool:
                    for folder in pool.map(_make_one, seeds, *([a] * studies for a in args)):
                        written.append(folder)
                        progress.advance(task)
        typer.echo(f"wrote {len(written)} studies to {out_dir}")
