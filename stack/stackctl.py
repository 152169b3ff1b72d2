"""The local service stack: Kafka, Triton, Orthanc and Prometheus on 127.0.0.1.

    python3 -m stack.stackctl up [SERVICE...]      install what is missing, start, wait healthy
    python3 -m stack.stackctl down [SERVICE...]    stop, leaving no process behind
    python3 -m stack.stackctl status               one line per service
    python3 -m stack.stackctl run -- CMD...        up, run CMD, then down what this call started

Standard library only, so it runs before the project's virtual environment exists.
Binaries, data and logs live under ``.stack/`` in the repository (git-ignored). Every
command is idempotent: ``up`` on a healthy service does nothing, ``down`` on a stopped one
does nothing. A service that cannot start says which one and why.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from stack.process import (  # noqa: F401  (re-exported for tests and callers)
    HOST,
    PORTS,
    ROOT,
    STATE,
    WORKER_METRICS_PORT,
    Service,
    StackError,
    group_alive,
    group_members,
)
from stack.services import Kafka, Orthanc, Prometheus, Triton

SERVICES: dict[str, Service] = {s.name: s for s in (Kafka(), Orthanc(), Prometheus(), Triton())}


# ----------------------------------------------------------------------------- commands


def select(names: list[str]) -> list[Service]:
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise StackError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}")
    return [SERVICES[n] for n in (names or list(SERVICES))]


def up(names: list[str] | None = None, started: list[str] | None = None) -> list[str]:
    """Start the services (all by default) and wait until each is healthy.

    Returns the names of the services this call started (the others were already up); they
    are also appended to ``started`` as they start, so a caller knows them even on failure."""
    services = select(names or [])
    started = [] if started is None else started
    failures: list[str] = []
    for service in services:
        try:
            if service.start():
                started.append(service.name)
        except StackError as exc:
            failures.append(str(exc))
    for service in services:
        if any(f.startswith(f"{service.name}:") for f in failures):
            continue
        try:
            service.wait_healthy()
        except StackError as exc:
            failures.append(str(exc))
            continue
        elapsed = time.monotonic() - service.started_at
        note = f"started, healthy after {elapsed:.1f} s" if service.name in started else "already running"
        print(f"{service.name:<11} {note}: {endpoints(service)}", flush=True)
    if failures:
        raise StackError("\n".join(failures))
    return started


def down(names: list[str] | None = None) -> None:
    for service in reversed(select(names or [])):
        stopped = service.stop()
        print(f"{service.name:<11} {'stopped' if stopped else 'was not running'}", flush=True)


def endpoints(service: Service) -> str:
    return ", ".join(f"{label} {HOST}:{port}" for label, port in service.ports.items())


def status() -> bool:
    all_healthy = True
    for service in SERVICES.values():
        state = service.status()
        all_healthy &= state == "healthy"
        print(f"{service.name:<11} {state:<22} {endpoints(service)}  log {service.log.relative_to(ROOT) if service.log.is_relative_to(ROOT) else service.log}")
    return all_healthy


def run_with_stack(cmd: list[str]) -> int:
    """Bring the stack up, run ``cmd``, bring down what this call started (even on failure)."""
    if not cmd:
        raise StackError("run: no command given (usage: stackctl run -- CMD...)")
    started: list[str] = []
    try:
        up(started=started)
        print(f"running: {' '.join(cmd)}", flush=True)
        return subprocess.call(cmd)
    finally:
        if started:
            down(started)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        cmd = argv[2:] if argv[1:2] == ["--"] else argv[1:]
        try:
            return run_with_stack(cmd)
        except StackError as exc:
            print(f"stack run failed:\n{exc}", file=sys.stderr)
            return 1
    parser = argparse.ArgumentParser(prog="stackctl", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "install"])
    parser.add_argument("services", nargs="*", help=f"default: all of {', '.join(SERVICES)}")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.services)
        elif args.command == "down":
            down(args.services)
        elif args.command == "install":
            for service in select(args.services):
                service.install()
        else:
            return 0 if status() else 3
    except StackError as exc:
        print(f"stack {args.command} failed:\n{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
