"""``causalkv sim``: the deterministic simulator (see ``causalkv.sim`` and docs/testing.md).

    causalkv sim                      # one random seed
    causalkv sim --seed 42 -v         # replay seed 42 with its event trace
    causalkv sim --seeds 500          # a sweep from a random start
    causalkv sim --seeds 10000 --start 0 --jobs 2

Exit status: 0 if every seed passed, 1 if any failed. The first line printed
is always the seed (or the range of seeds); a failing seed prints the exact
command that replays it.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from causalkv.sim.mutants import MUTANTS
from causalkv.sim.runner import failure_report, run_seed, statistics_line, sweep
from causalkv.sim.simulation import DEFAULT_CONVERGE_TIMEOUT_S, SimOptions, SimResult

EXIT_OK = 0
EXIT_FAILED = 1
PROGRESS_EVERY = 100


def register(app: typer.Typer) -> None:
    """Add the ``sim`` command to ``app``."""
    app.command("sim")(sim)


def _random_seed() -> int:
    return random.SystemRandom().randrange(2**31)


def sim(
    seed: Annotated[
        int | None, typer.Option(help="Run (or replay) this seed. Default: a random seed.", min=0)
    ] = None,
    seeds: Annotated[
        int | None, typer.Option(help="Run a sweep of this many seeds.", min=1)
    ] = None,
    start: Annotated[
        int | None, typer.Option(help="First seed of a sweep. Default: random.", min=0)
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print the event trace (single seed).")
    ] = False,
    history: Annotated[
        Path | None,
        typer.Option(help="Write the recorded history (JSON lines) to this file (single seed)."),
    ] = None,
    nodes: Annotated[
        int | None, typer.Option(help="Nodes in the pool (default: drawn, 1-9).", min=1, max=64)
    ] = None,
    shards: Annotated[
        int | None, typer.Option(help="Most shards per view (default: drawn, 1-4).", min=1, max=16)
    ] = None,
    clients: Annotated[
        int | None, typer.Option(help="Client processes (default: drawn, 1-6).", min=1, max=64)
    ] = None,
    keys: Annotated[
        int | None, typer.Option(help="Keys in the workload (default: drawn).", min=1, max=10_000)
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(help="Virtual seconds of the safety phase (default: drawn, 6-25).", min=0.1),
    ] = None,
    partitions: Annotated[
        bool, typer.Option("--partitions/--no-partitions", help="Allow network partitions.")
    ] = True,
    crashes: Annotated[
        bool, typer.Option("--crashes/--no-crashes", help="Allow crashes and restarts.")
    ] = True,
    view_changes: Annotated[
        bool,
        typer.Option(
            "--view-changes/--no-view-changes", help="Allow view changes while clients run."
        ),
    ] = True,
    network_faults: Annotated[
        bool,
        typer.Option(
            "--network-faults/--no-network-faults",
            help="Allow message loss, duplication and reordering.",
        ),
    ] = True,
    converge_timeout: Annotated[
        float,
        typer.Option(help="Virtual seconds the healed cluster has to converge.", min=1.0),
    ] = DEFAULT_CONVERGE_TIMEOUT_S,
    mutant: Annotated[
        str | None,
        typer.Option(
            help=f"Run a deliberately broken core ({', '.join(MUTANTS)}) to test the tester."
        ),
    ] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes for a sweep.", min=1, max=64)] = 1,
) -> None:
    """Run the deterministic simulator: a whole cluster of real replicas on a
    simulated network, clock and disk, with faults, checked by the history checker."""
    if mutant is not None and mutant not in MUTANTS:
        raise typer.BadParameter(f"unknown mutant {mutant!r}; known: {', '.join(MUTANTS)}")
    if seeds is not None and seed is not None:
        raise typer.BadParameter("give either --seed or --seeds, not both")
    template = SimOptions(
        seed=0,
        nodes=nodes,
        shards=shards,
        clients=clients,
        keys=keys,
        duration_s=duration,
        partitions=partitions,
        crashes=crashes,
        view_changes=view_changes,
        network_faults=network_faults,
        converge_timeout_s=converge_timeout,
        mutant=mutant,
    )
    if seeds is None:
        _single(template.with_seed(_random_seed() if seed is None else seed), verbose, history)
    else:
        if verbose or history is not None:
            raise typer.BadParameter("--verbose and --history apply to a single seed")
        _sweep(template, _random_seed() if start is None else start, seeds, jobs)


def _single(options: SimOptions, verbose: bool, history: Path | None) -> None:
    typer.echo(f"seed {options.seed}")
    result = run_seed(options, echo=typer.echo if verbose else None, history_path=history)
    if result.ok:
        typer.echo(f"seed {options.seed}: ok; {result.scenario}")
        typer.echo(statistics_line(result))
        if history is not None:
            typer.echo(f"history written to {history}")
        raise typer.Exit(EXIT_OK)
    typer.echo(failure_report(result))
    typer.echo(statistics_line(result))
    if history is not None:
        typer.echo(f"history written to {history}")
    typer.echo(f"replay: {options.replay_command()}")
    raise typer.Exit(EXIT_FAILED)


def _sweep(template: SimOptions, start: int, count: int, jobs: int) -> None:
    extra = " ".join(template.option_arguments())
    typer.echo(f"seeds {start}..{start + count - 1}{' ' + extra if extra else ''}")
    began = time.monotonic()

    def on_result(result: SimResult) -> None:
        if not result.ok:
            typer.echo(
                f"seed {result.seed}: FAIL {result.failure}: {result.message.splitlines()[0]}"
                f"  |  {result.options.replay_command()}"
            )
        done = result.seed - start + 1
        if done % PROGRESS_EVERY == 0 and done < count:
            print(f"... {done}/{count} seeds", file=sys.stderr, flush=True)

    summary = sweep(template, start, count, jobs=jobs, on_result=on_result)
    elapsed = time.monotonic() - began
    rate = summary.seeds / elapsed if elapsed > 0 else 0.0
    typer.echo(
        f"{summary.seeds} seeds, {len(summary.failed)} failed"
        f" ({elapsed:.1f}s, {rate:.2f} seeds/s, {summary.cpu_s:.1f}s cpu in simulations)"
    )
    raise typer.Exit(EXIT_OK if summary.ok else EXIT_FAILED)
