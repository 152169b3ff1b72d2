"""``vcfscreen triton-repo`` (write a Triton model repository) and ``vcfscreen export`` (check
the ONNX files; ``--tensorrt``: build the GPU profile's plans)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.errors import ConfigurationError

USAGE_ERROR = 2
DEFAULT_GPU_REPOSITORY = Path("triton_models") / "gpu"


def _models_dir(option: Path | None) -> Path:
    if option is not None:
        return option
    from engine.cli.config_cmd import load_settings

    return Path(load_settings().models.dir)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code=USAGE_ERROR)


def register(app: typer.Typer) -> None:
    @app.command("triton-repo")
    def triton_repo(
        out: Annotated[Path, typer.Argument(help="Repository folder to write (created; other models in it are kept).")],
        profile: Annotated[str, typer.Option("--profile", help="cpu (ONNX Runtime in the Python backend) or gpu (TensorRT plans).")] = "cpu",
        models_dir: Annotated[Path | None, typer.Option(
            "--models-dir", help="Folder of vertebra_seg.onnx / vertebra_cls.onnx (default: VCF_MODELS__DIR or the bundled models)."
        )] = None,
        pin_models_dir: Annotated[bool, typer.Option(
            "--pin-models-dir", help="CPU profile: write the absolute --models-dir into the configs instead of "
            "letting the server resolve it (VCF_MODELS__DIR, else the bundled models).",
        )] = False,
    ) -> None:
        """Write the Triton model repository of a profile from the ONNX models' metadata."""
        from engine.serving.onnx_facts import read_facts
        from engine.serving.repository import write_repository
        from engine.serving.spec import CPU, PROFILES

        if profile not in PROFILES:
            raise _fail(f"--profile {profile!r} must be one of {', '.join(PROFILES)}")
        source = _models_dir(models_dir)
        try:
            facts = read_facts(source)
        except ConfigurationError as exc:
            raise _fail(exc.message) from None
        pinned = str(source.resolve()) if pin_models_dir and profile == CPU else ""
        written = write_repository(profile, out, facts, models_dir=pinned)
        for path in written:
            typer.echo(f"wrote {path}")
        typer.echo(f"{profile} repository for {facts.seg.file_name} {facts.seg.version}, {facts.cls.file_name} {facts.cls.version}")

    @app.command("export")
    def export(
        tensorrt: Annotated[bool, typer.Option("--tensorrt", help="Build the TensorRT plans of the GPU profile (needs an NVIDIA GPU).")] = False,
        models_dir: Annotated[Path | None, typer.Option(
            "--models-dir", help="Folder of the exported ONNX models (default: VCF_MODELS__DIR or the bundled models)."
        )] = None,
        out: Annotated[Path, typer.Option("--out", help="GPU repository to write the plans and configs into.")] = DEFAULT_GPU_REPOSITORY,
    ) -> None:
        """Check the ONNX models against both Triton profiles; with --tensorrt, build the FP16 plans.

        ONNX files are exported by `vcfscreen train`; this command checks them (onnx.checker,
        metadata, every tensor each profile declares) and builds the GPU-only artefacts."""
        from engine.serving.gpu_export import check_onnx_for_profile, export_tensorrt
        from engine.serving.onnx_facts import read_facts
        from engine.serving.spec import PROFILES
        from engine.serving.tensorrt_build import GpuUnavailableError

        source = _models_dir(models_dir)
        try:
            facts = read_facts(source)
            for profile in PROFILES:
                for check in check_onnx_for_profile(source, profile, facts):
                    typer.echo(f"{profile}: {check.model} {check.path} passes onnx.checker; {check.tensors} tensors match the config")
        except ConfigurationError as exc:
            raise _fail(exc.message) from None
        if not tensorrt:
            return
        try:
            reports = export_tensorrt(source, out)
        except GpuUnavailableError as exc:
            raise _fail(f"{exc.message}. The ONNX checks above passed; build the plans on the GPU node that serves them.") from None
        except ConfigurationError as exc:
            raise _fail(exc.message) from None
        for report in reports:
            typer.echo(
                f"built {report.path} ({report.size_bytes / 2**20:.1f} MiB, {report.precision}, TensorRT "
                f"{report.tensorrt_version}, profile {report.profile.render()})"
            )
