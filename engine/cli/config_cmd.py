"""``vcfscreen config`` and ``vcfscreen version``."""

from __future__ import annotations

import typer
from pydantic import ValidationError

from engine import __version__
from engine.settings import Settings, as_env_lines, masked_json, settings_table


def load_settings() -> Settings:
    """Settings from the environment; a bad value is a usage error naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"VCF_{'__'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        typer.echo(f"invalid configuration: {problems}", err=True)
        raise typer.Exit(code=2) from None


def register(app: typer.Typer) -> None:
    @app.command("config")
    def config(
        env: bool = typer.Option(False, "--env", help="Print VCF_* environment lines instead of JSON."),
        markdown: bool = typer.Option(False, "--markdown", help="Print the table of every setting (README)."),
    ) -> None:
        """Print the effective settings (environment over defaults), secrets masked."""
        if markdown:
            typer.echo(settings_table())
            return
        settings = load_settings()
        if env:
            typer.echo("\n".join(as_env_lines(settings)))
        else:
            typer.echo(masked_json(settings))

    @app.command("version")
    def show_version() -> None:
        """Print the vcfscreen version."""
        typer.echo(__version__)
