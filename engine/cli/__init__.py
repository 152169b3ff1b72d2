"""The ``vcfscreen`` command line. Each command lives in its own module and registers itself.

Commands that need the streaming layer import it inside the command, so that ``engine``
imports nothing of Kafka.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="vcfscreen",
    help="Screen thoraco-abdomino-pelvic CT studies for vertebral compression fractures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules of engine.cli that define ``register(app)``; one command group each.
_COMMAND_MODULES = ("config_cmd", "train_cmd", "phantom_cmd", "evaluate_cmd", "screen_cmd", "serving_cmd", "stream_cmd")

for _name in _COMMAND_MODULES:
    importlib.import_module(f"engine.cli.{_name}").register(app)


def main() -> None:
    app()
