"""The ``nnlab`` command: a thin shell over the Python API.

User mistakes (bad options, bad data, bad specs) print one clear message and exit with status 2;
``nnlab --debug`` shows the traceback of any failure instead.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from urllib.parse import quote

import click
from rich.console import Console
from rich.table import Table

from nnlab import __version__, api, connect, service
from nnlab.__main__ import EXIT_INTERRUPTED
from nnlab.checks import InputError, check_choice, plural
from nnlab.engine import EpochRecord
from nnlab.engine.packed import MAX_PACK
from nnlab.params import PARAMS, Param, by_name
from nnlab.report import mean_std
from nnlab.store import ENV_VAR, StoreError, database, delete_sweep, rename_sweep
from nnlab.store.columns import METRICS, RUN_COLUMNS, SWEEP_COLUMNS
from nnlab.store.database import StoreFault
from nnlab.store.models import RUN_STATUSES, STALE_AFTER
from nnlab.store.sql import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT_S, run_query
from nnlab.sweeps import halving
from nnlab.sweeps.grid import DEFAULT_MAX_RUNS, axis_values, from_values
from nnlab.sweeps.runner import BACKENDS, SweepStopped
from nnlab.sweeps.spec import load_spec

EXIT_USAGE = 2


class UserError(click.ClickException):
    """A mistake in what the user asked for: one message, exit status 2, no traceback."""

    exit_code = EXIT_USAGE


@contextmanager
def user_errors(ctx: click.Context) -> Iterator[None]:
    """Turn the API's user-mistake errors (bad arguments, bad data, an unusable database) into
    one message and exit 2. Anything else is a bug and keeps its traceback (exit 1)."""
    try:
        yield
    except (InputError, StoreError) as error:
        if ctx.find_root().params.get("debug"):
            raise
        raise UserError(str(error)) from error


class _Commands(click.Group):
    """nnlab's commands, each of which Ctrl-C ends with "interrupted" and status 130 (click's
    own way is an empty line, "Aborted!" and 1; ``main`` catches what comes outside a
    command, as click parses the command line)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nnlab")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of short messages.")
def cli(debug: bool) -> None:
    """nnlab: train small neural networks, sweep their hyperparameters, study convergence.

    \b
    Example:
      nnlab sweep sweeps/quickstart.yaml -j 2
      nnlab runs --sweep quickstart
    """


def db_option(command):
    """``--db URL`` on every command that touches the store; ``$NNLAB_DB`` is the default."""
    return click.option(
        "--db",
        "db",
        envvar=ENV_VAR,
        metavar="URL",
        help=f"Database URL or SQLite file [default: ${ENV_VAR}, else {database.DEFAULT_URL}].",
    )(command)


def format_option(command):
    """``--format table|csv|json`` for every command that prints rows."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "csv", "json"]),
        default="table",
        show_default=True,
        help="How to print the rows.",
    )(command)


DEFAULT_BATCH_SIZE = api.DEFAULT_BATCH_SIZE


def _parse_hidden(ctx, param, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    if value.strip() == "":
        return ()
    try:
        sizes = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of layer widths, e.g. 16,16"
        ) from None
    if any(size < 1 for size in sizes):
        raise click.BadParameter(f"layer widths must be >= 1, got {value!r}")
    return sizes


SHORT_FLAGS = {"learning_rate": "-lr"}


def param_options(command):
    """An option of ``nnlab train`` for every hyperparameter of ``nnlab.params.PARAMS``, with
    its choices and help; one left out is not passed, so the API's default applies."""
    for param in reversed(PARAMS):
        command = click.option(param.option, *_short(param), param.name, **_option(param))(command)
    return command


def _short(param: Param) -> tuple[str, ...]:
    return (SHORT_FLAGS[param.name],) if param.name in SHORT_FLAGS else ()


def _option(param: Param) -> dict:
    """click's settings for ``param``'s option: its type, help, and the default it shows."""
    shown = _shown_default(param)
    help_text = f"{param.help}{f' [default: {shown}]' if shown else ''}"
    if param.applies is not None:
        help_text += f" Applies {param.applies}."
    if param.kind is tuple:
        return {"callback": _parse_hidden, "metavar": "WIDTHS", "help": help_text}
    kind = click.Choice(param.choices) if param.choices else param.kind
    if param.words:
        kind = NumberOrWord(param.kind, param.words)
    return {"type": kind, "help": help_text}


class NumberOrWord(click.ParamType):
    """A number of ``kind``, or one of ``words`` (``--batch-size auto``)."""

    def __init__(self, kind: type, words: tuple[str, ...]) -> None:
        self.kind, self.words = kind, words
        self.name = f"{kind.__name__}|{'|'.join(words)}"

    def convert(self, value, param, ctx):
        if value in self.words:
            return value
        try:
            return self.kind(value)
        except (TypeError, ValueError):
            choices = " or ".join(repr(word) for word in self.words)
            self.fail(f"{value!r} is not an {self.kind.__name__} or {choices}", param, ctx)


def _shown_default(param: Param) -> str:
    if param.name == "batch_size":
        return f"{DEFAULT_BATCH_SIZE}, or all the training samples when fewer"
    if param.kind is tuple:
        return ",".join(map(str, param.default))
    return "" if param.default is None else str(param.default)


@cli.command()
@click.option(
    "--data",
    default="spirals",
    show_default=True,
    help="Synthetic set (xor, moons, circles, spirals, blobs, sine) or a .csv/.npz path.",
)
@click.option("--target", help="Target column of a CSV file.")
@click.option("--n-samples", type=int, help="Size of a synthetic set.")
@click.option("--classes", type=int, help="Number of classes (spirals, blobs).")
@click.option("--noise", type=float, help="Noise level of a synthetic set.")
@click.option(
    "--val-fraction",
    type=float,
    default=0.2,
    show_default=True,
    help="Share of the data held out for validation.",
)
@click.option(
    "--standardize/--no-standardize",
    default=True,
    show_default=True,
    help="Scale features to zero mean, unit variance (fitted on the training part).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seeds the weights and the shuffling."
)
@param_options
@click.option(
    "--every", type=int, default=0, help="Print every Nth epoch (default: about 25 rows in all)."
)
@click.pass_context
def train(
    ctx, data, target, n_samples, classes, noise, val_fraction, standardize, every, **settings
):
    """Train one network and print its per-epoch metrics.

    \b
    Example:
      nnlab train --data spirals --hidden 16,16 --activation tanh --gd minibatch \\
        --batch-size 32 --learning-rate 0.1 --optimizer sgd --epochs 50 --seed 0
      nnlab train --data xor --hidden 4 --activation tanh --epochs 500
      nnlab train --data sweeps/data/moons.csv --target kind --epochs 20
    """
    data_params = {"name": data, "val_fraction": val_fraction, "standardize": standardize}
    extras = {"target": target, "n_samples": n_samples, "classes": classes, "noise": noise}
    data_params.update({key: value for key, value in extras.items() if value is not None})
    settings = {name: value for name, value in settings.items() if value is not None}
    epochs = settings.get("epochs", by_name()["epochs"].default)
    console = _console()
    table = _epoch_table()
    stride = every if every > 0 else max(1, math.ceil(epochs / 25))

    shown: list[int] = []

    def on_epoch(record: EpochRecord) -> None:
        if record.epoch == 1 or record.epoch % stride == 0:
            table.add_row(*_epoch_cells(record))
            shown.append(record.epoch)

    with _option_terms(ctx):
        outcome = api.train(data_params, on_epoch=on_epoch, **settings)
    result = outcome.result
    if result.final is not None and result.final.epoch not in shown:
        table.add_row(*_epoch_cells(result.final))
    console.print(table)
    colour = {"diverged": "red", "early_stopped": "yellow"}.get(result.status, "green")
    reason = f" ({result.reason})" if result.reason else ""
    console.print(
        f"[bold {colour}]{result.status}[/] after {plural(result.epochs_run, 'epoch')}, "
        f"{plural(result.updates, 'update')}{reason}; data {outcome.fingerprint[:19]}…"
    )


# `nnlab train`'s options, by the names the API's messages use for them (batch_size=, target=)
_NAMED = "|".join(param.name for param in train.params)
_SETTING = re.compile(rf"\b({_NAMED})=('?)([^\s',;]*)\2|\b({_NAMED})(?= must\b)")


@contextmanager
def _option_terms(ctx: click.Context) -> Iterator[None]:
    """``user_errors`` for ``nnlab train``, its messages in the user's terms: ``--batch-size
    5000`` where the API says ``batch_size=5000``, ``--target`` for ``target=``."""
    try:
        with user_errors(ctx):
            yield
    except UserError as error:
        message = _SETTING.sub(_as_option, error.message)
        error.message = message.replace("the parameter --", "--")
        raise


def _as_option(match: re.Match) -> str:
    name, value = match[1] or match[4], match[3]
    flag = "--" + name.replace("_", "-")
    return f"{flag} {value}" if value else flag


def _epoch_table() -> Table:
    table = Table(title=None, box=None, header_style="bold")
    columns = ("epoch", "train_loss", "val_loss", "train_acc", "val_acc", "lr", "grad_norm")
    for name in (*columns, "seconds"):
        table.add_column(name, justify="right")
    return table


def _epoch_cells(record: EpochRecord) -> list[str]:
    def number(value: float | None, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    return [
        str(record.epoch),
        number(record.train_loss, ".5g"),
        number(record.val_loss, ".5g"),
        number(record.train_accuracy, ".3f"),
        number(record.val_accuracy, ".3f"),
        number(record.learning_rate, ".4g"),  # the schedule's η of the epoch
        number(record.grad_norm, ".3g"),
        number(record.seconds, ".4f"),
    ]


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@db_option
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Workers: processes (loky), threads (threading), local Dask worker processes.",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="loky",
    show_default=True,
    help="joblib backend that runs the runs.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Dask scheduler (tcp://HOST:PORT) for --backend dask; without it, a local cluster.",
)
@click.option(
    "--stale-after",
    type=click.FloatRange(min=2),
    default=STALE_AFTER,
    show_default=True,
    metavar="SECONDS",
    help="A run silent this long is presumed dead; the sweep stops if all runs are.",
)
@click.option("--dry-run", is_flag=True, help="Print the expanded grid; write nothing.")
@click.option("--retry-failed", is_flag=True, help="Also re-run runs that failed.")
@click.option(
    "--max-runs",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_RUNS,
    show_default=True,
    help="Refuse grids larger than this.",
)
@click.option(
    "--max-pack",
    type=click.IntRange(min=1),
    default=MAX_PACK,
    show_default=True,
    help="Train at most this many compatible runs together in one worker (runs that differ "
    "only in learning rate, say); 1 trains each run alone.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
@click.option("--no-report", is_flag=True, help="Do not write the HTML report at the end.")
@click.option(
    "--serve",
    is_flag=True,
    help="Serve the database read-only on 127.0.0.1 while the sweep trains, and after it "
    "until Ctrl-C.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help=f"Port of --serve (0: any free one) [default: {service.DEFAULT_PORT}].",
)
@click.pass_context
def sweep(ctx, spec, dry_run, quiet, no_report, serve, port, **options):
    """Run the grid of a sweep spec, logging every run and epoch to the database, then write
    its HTML report (reports/<sweep>.html) and print the path.

    Running the same spec again resumes it: only unfinished runs train. With --serve, the
    sweep's live page is served while it trains (the URL is printed first), and after it ends
    until Ctrl-C.

    \b
    Example:
      nnlab sweep sweeps/quickstart.yaml -j 2
      nnlab sweep sweeps/quickstart.yaml --serve
    """
    if port is not None and not serve:
        raise UserError(f"--port {port} is the port of --serve: add --serve, or drop --port")
    with user_errors(ctx):
        parsed = load_spec(spec)
        if dry_run:
            planning = ("db", "jobs", "scheduler", "max_runs")
            _print_plan(api.plan(parsed, **{name: options[name] for name in planning}))
            return
        serving = _served(options["db"], parsed.name, port) if serve else nullcontext()
        with serving as url:
            result = _run_sweep(ctx, parsed, options, quiet, no_report)
            _print_result(result, list(parsed.grid))
            if url is not None:
                still = f"sweep finished; still serving {url}, Ctrl-C to stop"
                service.wait_until_stopped(ready=lambda: click.echo(still, err=True))
                click.echo("stopped", err=True)


@contextmanager
def _served(db: str | None, name: str, port: int | None) -> Iterator[str]:
    """``--serve``: the sweep's page served while the block runs, its URL printed first."""
    port = service.DEFAULT_PORT if port is None else port
    with service.serving(db, port, f"/sweeps/{quote(name, safe='')}") as url:
        click.echo(f"serving the sweep read-only at {url}", err=True)
        yield url


def _run_sweep(ctx: click.Context, parsed, options: dict, quiet: bool, no_report: bool):
    """``api.sweep``, a stop turned into its message and exit status (130 interrupted, 1 when
    it cannot go on)."""
    try:  # each option is the API's argument of the same name
        return api.sweep(parsed, **options, progress=not quiet, report=not no_report)
    except KeyboardInterrupt as stop:
        _print_stopped(stop)
        click.echo(
            "interrupted: in-flight runs are marked interrupted; run the same "
            "command again to resume",
            err=True,
        )
        ctx.exit(EXIT_INTERRUPTED)
    except (SweepStopped, StoreFault) as error:
        _print_stopped(error)
        click.echo(f"error: {error}", err=True)
        ctx.exit(1)


def _print_result(result, axes: list[str]) -> None:
    click.echo(result.summary())
    lab = result.lab()
    scheduler = lab.scheduler(result.name)
    if scheduler is not None:
        _print_rungs(scheduler, lab.rungs(result.name), lab.budget(result.name))
    _print_best(result.best(), axes, result.metric, rung_epochs=(scheduler or {}).get("rungs"))
    if result.report is not None:
        click.echo(f"report: {result.report}")
    elif result.report_error is not None:
        click.echo(
            f"warning: no report written ({result.report_error}); try again with: "
            f"nnlab report {result.name}",
            err=True,
        )


def _print_stopped(stop: BaseException) -> None:
    """Where the runs of a sweep that stopped stand, if its database could still be read."""
    result = getattr(stop, "sweep_result", None)
    if result is not None and result.accounted:
        click.echo(result.summary())


BEST_SHOWN = 10


def _print_rungs(scheduler: dict, rungs, budget) -> None:
    """A scheduled sweep's rungs (configurations at each, and the cut) and its budget."""
    click.echo(
        f"{scheduler['type']} by {scheduler['metric']}, eta {scheduler['eta']}, rungs at "
        f"{', '.join(map(str, scheduler['rungs']))} epochs: {budget}"
    )
    brackets = scheduler["brackets"] > 1
    columns = [*(["bracket"] if brackets else []), "rung", "epoch", "configurations"]
    columns += ["promoted", "pruned", "waiting", f"best {scheduler['metric']}"]
    rows = [
        (
            *([row.bracket] if brackets else []),
            row.rung,
            row.epoch,
            row.entered,
            row.promoted,
            row.pruned,
            row.waiting,
            "–" if row.best != row.best else f"{row.best:.4g}",
        )
        for row in rungs.itertuples()
    ]
    _print_rows(columns, rows, "table", noun=None)


def _print_best(configurations, axes: list[str], metric: str, rung_epochs=None) -> None:
    """The best ``BEST_SHOWN`` configurations: grid settings, final ``metric`` mean ± std over
    seeds (under a scheduler, at the epoch of the rung they reached)."""
    best = configurations.head(BEST_SHOWN)
    rows = []
    for row in best.itertuples():
        # a configuration is its runs' settings without the seed
        settings = axis_values(from_values({**json.loads(row.configuration), "seed": 0}), axes)
        loss = mean_std(getattr(row, f"final_{metric}_mean"), getattr(row, f"final_{metric}_std"))
        trouble = f"{row.diverged}/{row.runs}" if row.diverged else ""
        failed = f"{row.failed}/{row.runs}" if row.failed else ""
        reached = () if rung_epochs is None else (rung_epochs[int(row.rung)],)
        rows.append((*settings, *reached, loss, trouble, failed))
    total = len(configurations)
    which = (
        f"all {plural(total, 'configuration')}"
        if total == len(best)
        else (f"the best {len(best)} of {plural(total, 'configuration')}")
    )
    click.echo(f"{which}, best first, final {metric} mean ± std over seeds:")
    reached = [] if rung_epochs is None else ["epochs"]
    columns = [*axes, *reached, f"final_{metric}", "diverged", "failed"]
    _print_rows(columns, rows, "table", noun=None)


def _print_plan(planned) -> None:
    spec, points = planned.spec, planned.points
    axes = list(spec.grid)
    seeds = plural(len(spec.seeds), "seed")
    click.echo(f"sweep {spec.name!r}: {plural(len(points), 'run')} ({seeds} each)")
    rows = [(*axis_values(p.config, axes), p.config.seed) for p in points]
    _print_rows([*axes, "seed"], rows, "table", "run")
    rungs = halving.ladder(spec)
    if rungs is not None:
        configurations = len(points) // len(spec.seeds)
        most = rungs.planned_epochs(configurations, len(spec.seeds))
        full = rungs.max_epochs * len(points)
        hedge = "at least" if rungs.kind == "asha" else "at most"
        click.echo(
            f"{rungs.kind} by {rungs.metric}, eta {rungs.eta}, rungs at "
            f"{', '.join(map(str, rungs.epochs))} epochs: {hedge} {most:,} epochs of the full "
            f"grid's {full:,} ({most / full:.1%}) if no run stops early by itself"
        )
        if rungs.brackets > 1:
            sizes = rungs.bracket_sizes(configurations)
            brackets = [
                f"{n} at rung {b} ({plural(rungs.epochs[b], 'epoch')})" for b, n in enumerate(sizes)
            ]
            click.echo(f"brackets, configurations by the rung they start at: {', '.join(brackets)}")
    click.echo(_RESUMPTION[planned.resumption].format(final=planned.final, train=planned.to_train))


_RESUMPTION = {
    "new": "a new sweep: every run would train",
    "same": "resumes the stored sweep: {final} runs final, {train} would train",
    "extends": "extends the stored sweep with new grid values or seeds: {final} runs final, "
    "{train} would train",
}


@cli.group()
def db() -> None:
    """The database schema: see where it stands, bring it up to date.

    \b
    Example:
      nnlab db current
      nnlab db upgrade
    """


@db.command("upgrade")
@db_option
@click.pass_context
def db_upgrade(ctx, db):
    """Upgrade the database to this nnlab's schema (creating it if new).

    \b
    Example:
      nnlab db upgrade --db sqlite:///nnlab.db
    """
    with user_errors(ctx):
        before, after = database.upgrade_database(db)
    where = database.display_url(database.resolve_url(db))
    click.echo(f"{where}: {before.current or 'empty'} -> {after.current} (head)")


@db.command("current")
@db_option
@click.pass_context
def db_current(ctx, db):
    """Show the database's schema revision and this nnlab's.

    \b
    Example:
      nnlab db current --db sqlite:///nnlab.db
    """
    with user_errors(ctx):
        state = database.database_state(db)
    click.echo(f"database {state.current or '-'}, nnlab head {state.head}: {state.verdict}")


@cli.command()
@click.argument("query")
@db_option
@format_option
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Stop the query after this many seconds (a positive number).",
)
@click.option(
    "--max-rows",
    type=int,
    default=DEFAULT_MAX_ROWS,
    show_default=True,
    help="Print at most this many rows; the rest are not fetched.",
)
@click.pass_context
def sql(ctx, query, db, fmt, timeout, max_rows):
    """Run a read-only SQL query against the tracking database.

    Tables: sweeps, runs, epochs; view: run_summary. Anything that would write is refused.

    \b
    Example:
      nnlab sql "SELECT activation, avg(final_val_loss) FROM run_summary GROUP BY 1"
    """
    with user_errors(ctx):
        result = run_query(query, db, timeout=timeout, max_rows=max_rows)
    _print_rows(result.columns, result.rows, fmt, "row")
    if result.truncated:
        click.echo(
            f"note: output stopped after {plural(len(result.rows), 'row')}; more rows were not "
            "fetched (raise --max-rows, or narrow the query with WHERE or LIMIT)",
            err=True,
        )


# What `nnlab runs` and `nnlab sweeps` tables show without --columns, in order; KEEP says which
# stay longest when a terminal is too narrow for all of them (the last is left out first).
RUN_TABLE = (
    "run_id",
    "sweep",
    "status",
    "seed",
    "learning_rate",
    "batch_size",
    "activation",
    "gd",
    "optimizer",
    "hidden",
    "final_val_loss",
    "best_val_loss",
    "epochs_run",
    "duration_s",
)
RUN_KEEP = (
    "run_id",
    "status",
    "final_val_loss",
    "learning_rate",
    "gd",
    "batch_size",
    "activation",
    "sweep",
    "best_val_loss",
    "optimizer",
    "hidden",
    "seed",
    "epochs_run",
    "duration_s",
)
SWEEP_TABLE = ("sweep_id", "name", "status", "runs", "created_at", "finished_at", "description")
SWEEP_KEEP = ("name", "status", "runs", "description", "sweep_id", "created_at", "finished_at")
WRAPPED = 20  # characters a text column needs at least: longer text wraps onto more lines
# Table headers shorter than their columns' names, so that more columns fit a terminal.
SHORT_HEADERS = {
    "run_id": "run",
    "sweep_id": "id",
    "learning_rate": "lr",
    "batch_size": "batch",
    "final_val_loss": "final_val",
    "best_val_loss": "best_val",
    "epochs_run": "epochs",
    "duration_s": "seconds",
}


def columns_option(known: tuple[str, ...]):
    """``--columns a,b,c``: which of ``known`` to print, in that order."""

    def parse(ctx, param, value: str | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        names = tuple(name.strip() for name in value.split(",") if name.strip())
        try:
            return tuple(check_choice("column", name, known) for name in names) or None
        except InputError as error:
            raise click.BadParameter(str(error)) from None

    return click.option(
        "--columns",
        metavar="A,B,…",
        callback=parse,
        help=f"Columns to print, comma-separated [default: all for csv and json; for a table, "
        f"those that fit the terminal]. Any of: {', '.join(known)}.",
    )


@cli.group(invoke_without_command=True)
@db_option
@format_option
@columns_option(SWEEP_COLUMNS)
@click.pass_context
def sweeps(ctx, db, fmt, columns):
    """List the sweeps in the database; rename or delete one.

    \b
    Example:
      nnlab sweeps
      nnlab sweeps --columns name,status,runs --format csv
      nnlab sweeps rename quickstart quickstart-v1
      nnlab sweeps delete quickstart-v1 --yes
    """
    if ctx.invoked_subcommand is not None:
        return
    with user_errors(ctx):
        frame = connect(db).sweeps()
    _print_listing(frame, fmt, columns or SWEEP_TABLE, "sweep", columns is None and SWEEP_KEEP)


def _group_db(ctx: click.Context, db: str | None) -> str | None:
    """``--db`` given after the subcommand, else before it (``nnlab sweeps --db X delete``)."""
    return db if db is not None else ctx.parent.params.get("db")


@sweeps.command("delete")
@click.argument("name")
@db_option
@click.option("--yes", "-y", is_flag=True, help="Delete without asking for confirmation.")
@click.pass_context
def sweeps_delete(ctx, name, db, yes):
    """Delete sweep NAME with all its runs and their epochs, in one transaction.

    Refused while a runner holds any of its runs (a heartbeat in the last minute).

    \b
    Example:
      nnlab sweeps delete quickstart --yes
    """
    db = _group_db(ctx, db)
    with user_errors(ctx):
        runs = connect(db).sweep(name).runs
        if not yes:
            question = f"delete sweep {name!r}, its {plural(runs, 'run')} and their epochs?"
            click.confirm(question, abort=True)
        deleted = delete_sweep(database.open_store(db), name)
    click.echo(
        f"deleted sweep {name!r}: {plural(deleted.runs, 'run')}, {plural(deleted.epochs, 'epoch')}"
    )


@sweeps.command("rename")
@click.argument("old")
@click.argument("new")
@db_option
@click.pass_context
def sweeps_rename(ctx, old, new, db):
    """Rename sweep OLD to NEW (a name no other sweep has; up to 200 characters).

    \b
    Example:
      nnlab sweeps rename quickstart quickstart-v1
    """
    with user_errors(ctx):
        rename_sweep(database.open_store(_group_db(ctx, db)), old, new)
    click.echo(f"renamed sweep {old!r} to {new!r}")


@cli.command()
@db_option
@click.option("--sweep", help="Only the runs of this sweep.")
@click.option(
    "--status",
    multiple=True,
    type=click.Choice(RUN_STATUSES),
    help="Only runs with this status (repeatable).",
)
@format_option
@columns_option(tuple(RUN_COLUMNS))
@click.pass_context
def runs(ctx, db, sweep, status, fmt, columns):
    """List runs with their hyperparameters and results (the run_summary view).

    \b
    Example:
      nnlab runs --sweep quickstart
      nnlab runs --sweep quickstart --status diverged --columns run_id,learning_rate,gd
      nnlab runs --format csv > runs.csv
    """
    with user_errors(ctx):
        frame = connect(db).runs(sweep=sweep, status=status or None)
    _print_listing(frame, fmt, columns or RUN_TABLE, "run", columns is None and RUN_KEEP)


@cli.command()
@click.argument("sweeps", nargs=-1, required=True, metavar="SWEEP [SWEEP ...]")
@db_option
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    help="File (or existing folder) to write [default: reports/<sweep>.html].",
)
@click.option(
    "--metric",
    type=click.Choice(METRICS),
    default=METRICS[0],
    show_default=True,
    help="The loss to rank configurations by and to plot.",
)
@click.option(
    "--threshold",
    type=float,
    help="Loss that counts as converged, for epochs and seconds to reach it "
    "[default: the median best loss of the runs that did not diverge].",
)
@click.pass_context
def report(ctx, sweeps, db, output, metric, threshold):
    """Write an HTML convergence report on one or more sweeps and print its path.

    One self-contained file that opens offline: best configurations, convergence curves,
    learning rate × batch size heatmap, batch vs stochastic vs mini-batch GD, the effect of
    each setting, failures and the spec. Several sweeps are compared side by side.

    \b
    Example:
      nnlab report quickstart
      nnlab report quickstart gd-variants -o reports/compare.html
    """
    from nnlab.report import write_report  # matplotlib and Jinja2: for this command only

    with user_errors(ctx):
        path = write_report(connect(db), sweeps, output, metric=metric, threshold=threshold)
    click.echo(str(path))


@cli.command()
@db_option
@click.option(
    "--host",
    default=service.DEFAULT_HOST,
    show_default=True,
    help="Address to listen on; any but loopback needs a token (one is made if not given).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=service.DEFAULT_PORT,
    show_default=True,
    help="Port (0: any free one).",
)
@click.option("--token", help="Token requests must carry [default: none on loopback].")
@click.option("--open", "open_browser", is_flag=True, help="Open the URL in the default browser.")
@click.option(
    "--poll-seconds",
    type=float,
    default=service.DEFAULT_POLL_SECONDS,
    show_default=True,
    callback=lambda ctx, param, value: _poll_seconds(ctx, value),
    help=f"How often live pages read the database, up to {service.MAX_POLL_SECONDS:g}.",
)
@click.pass_context
def serve(ctx, db, host, port, token, open_browser, poll_seconds):
    """Serve the database as a live, read-only web UI and JSON API until interrupted
    (Ctrl-C).

    It prints the URL to open, with ?token= when a token is needed.

    \b
    Example:
      nnlab serve --port 8765 --open
    """
    with user_errors(ctx):
        service.serve(db, host, port, token, open_browser=open_browser, poll_seconds=poll_seconds)


def _poll_seconds(ctx: click.Context, value: float) -> float:
    """``--poll-seconds`` checked by the service's own rule: a mistake is one line, exit 2."""
    with user_errors(ctx):
        return service.check_poll_seconds(value, "--poll-seconds")


def _print_listing(frame, fmt: str, columns, noun: str, keep) -> None:
    """Print the ``columns`` of ``frame``. Unless they were chosen (``keep`` is false), csv and
    json get all of the frame's columns, and a table as many as fit the terminal, dropping
    them in the reverse order of ``keep``."""
    if fmt != "table" and keep:
        columns = list(frame.columns)
    cells = frame[list(columns)].astype(object)
    rows = list(cells.where(cells.notna(), None).itertuples(index=False, name=None))
    width, left_out = _console().width, []
    if fmt == "table" and keep:
        columns, rows, left_out = _fitting(list(columns), rows, width, keep)
    _print_rows(columns, rows, fmt, noun, SHORT_HEADERS)
    if left_out:
        click.echo(
            f"left out to fit {width} columns: {', '.join(left_out)} (choose with --columns, "
            "or see them all with --format csv)"
        )


def _fitting(columns: list[str], rows: list[tuple], width: int, keep: tuple[str, ...]):
    """The ``columns`` that fit ``width`` characters of terminal (the first of ``keep`` kept
    longest), their cells, and the names of those left out."""
    needs = {column: _needed(column, [row[i] for row in rows]) for i, column in enumerate(columns)}
    shown = list(columns)
    for column in reversed(keep[1:]):
        if sum(needs[c] for c in shown) + len(shown) - 1 <= width:
            break
        shown.remove(column)
    index = [columns.index(column) for column in shown]
    left_out = [column for column in columns if column not in shown]
    return shown, [tuple(row[i] for i in index) for row in rows], left_out


def _needed(column: str, values: list) -> int:
    """Characters column ``column`` needs: all of its longest cell, but text wraps."""
    header = len(SHORT_HEADERS.get(column, column))
    cells = max((len(_cell(value)) for value in values), default=0)
    text = any(isinstance(value, str) for value in values)
    return max(header, min(cells, WRAPPED) if text else cells)


def _print_rows(columns, rows, fmt: str, noun: str | None = "row", headers=None) -> None:
    """``rows`` as csv, json or a table (whose ``headers`` may abbreviate ``columns``), then
    for a table how many ``noun``s it has (nothing for None)."""
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif fmt == "json":
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        click.echo(json.dumps(records, default=str, indent=1))
    else:
        _console().print(_table([(headers or {}).get(c, c) for c in columns], rows))
        if noun is not None:
            click.echo(f"({plural(len(rows), noun)})")


def _table(columns: list[str], rows: list[tuple]) -> Table:
    """Columns one space apart; a cell too long for its column wraps onto more lines, so that
    nothing is cut short, and numbers only when nothing else can give way."""
    table = Table(box=None, header_style="bold", pad_edge=False, collapse_padding=True)
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows)
        for i in range(len(columns))
    ]
    for column, is_number in zip(columns, numeric, strict=True):
        table.add_column(
            column,
            justify="right" if is_number else "left",
            overflow="fold",
            no_wrap=False,
        )
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    return table


def _console() -> Console:
    # piped output gets room for wide tables instead of rich's 80-column default, unless the
    # user set COLUMNS
    return Console() if sys.stdout.isatty() or "COLUMNS" in os.environ else Console(width=250)


def _cell(value) -> str:
    """A table cell: floats to 4 significant digits, times to the second, NULL as nothing."""
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def main() -> None:
    """``nnlab``: click's own handling of errors and exits, except that a Ctrl-C anywhere (as
    click parses the command line too) is KeyboardInterrupt, which ``nnlab.__main__`` ends
    with "interrupted" and 130, not click's "Aborted!" and 1."""
    try:
        status = cli.main(prog_name="nnlab", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort as abort:
        if isinstance(abort.__cause__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        click.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)  # an int: a command's ctx.exit(code)


if __name__ == "__main__":
    sys.exit(main())
