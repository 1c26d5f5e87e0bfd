"""The ``nnlab`` command: a thin shell over the Python API.

User mistakes (bad options, bad data, bad specs) print one clear message and exit with status 2;
``nnlab --debug`` shows the traceback of any failure instead.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.table import Table

from nnlab import __version__, api
from nnlab.__main__ import EXIT_INTERRUPTED
from nnlab.checks import InputError
from nnlab.engine import GD_VARIANTS, HIDDEN_ACTIVATIONS, LOSS_NAMES, OPTIMIZERS, EpochRecord
from nnlab.report import METRICS, write_report
from nnlab.store import ENV_VAR, StoreError, connect, database
from nnlab.store.database import StoreFault
from nnlab.store.models import RUN_STATUSES, STALE_AFTER
from nnlab.store.sql import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT_S, run_query
from nnlab.sweeps.grid import DEFAULT_MAX_RUNS, axis_values, from_values
from nnlab.sweeps.runner import BACKENDS, SweepStopped, plan
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nnlab")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of short messages.")
def cli(debug: bool) -> None:
    """nnlab: train small neural networks, sweep their hyperparameters, study convergence."""


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


def _parse_hidden(ctx, param, value: str) -> tuple[int, ...]:
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
    "--hidden",
    default="16,16",
    show_default=True,
    callback=_parse_hidden,
    help="Hidden layer widths, comma-separated; '' for none.",
)
@click.option(
    "--activation", default="relu", show_default=True, type=click.Choice(list(HIDDEN_ACTIVATIONS))
)
@click.option(
    "--output",
    type=click.Choice(["softmax", "sigmoid", "identity"]),
    help="Output activation; chosen from the loss when omitted.",
)
@click.option(
    "--loss",
    type=click.Choice(list(LOSS_NAMES)),
    help="Loss; cross_entropy for class labels, mse for numbers when omitted.",
)
@click.option(
    "--gd",
    default="minibatch",
    show_default=True,
    type=click.Choice(GD_VARIANTS),
    help="batch: all samples per update; stochastic: one; minibatch: --batch-size.",
)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--learning-rate", "-lr", type=float, default=0.1, show_default=True)
@click.option("--optimizer", default="sgd", show_default=True, type=click.Choice(list(OPTIMIZERS)))
@click.option(
    "--momentum",
    type=float,
    default=0.9,
    show_default=True,
    help="μ for the momentum and nesterov optimizers.",
)
@click.option("--epochs", type=int, default=50, show_default=True)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seeds the weights and the shuffling."
)
@click.option(
    "--patience", type=int, help="Stop early after this many epochs without validation improvement."
)
@click.option(
    "--tol",
    type=float,
    help="Stop as converged when the training loss decreases by less than this.",
)
@click.option(
    "--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True
)
@click.option(
    "--every", type=int, default=0, help="Print every Nth epoch (default: about 25 rows in all)."
)
@click.pass_context
def train(ctx, data, target, n_samples, classes, noise, val_fraction, standardize, hidden,
          activation, output, loss, gd, batch_size, learning_rate, optimizer, momentum, epochs,
          seed, patience, tol, dtype, every):  # fmt: skip
    """Train one network and print its per-epoch metrics.

    \b
    Example:
      nnlab train --data spirals --hidden 16,16 --activation tanh --gd minibatch \\
        --batch-size 32 --learning-rate 0.1 --optimizer sgd --epochs 50 --seed 0
      nnlab train --data measurements.csv --target label --epochs 20
    """
    data_settings = {"target": target, "n_samples": n_samples, "classes": classes, "noise": noise}
    settings = dict(
        val_fraction=val_fraction, standardize=standardize, hidden=hidden, activation=activation,
        output=output, loss=loss, gd=gd, batch_size=batch_size, learning_rate=learning_rate,
        optimizer=optimizer, momentum=momentum, epochs=epochs, seed=seed, dtype=dtype,
        patience=patience, tol=tol,
        **{key: value for key, value in data_settings.items() if value is not None},
    )  # fmt: skip
    console = _console()
    table = _epoch_table()
    stride = every if every > 0 else max(1, math.ceil(epochs / 25))

    shown: list[int] = []

    def on_epoch(record: EpochRecord) -> None:
        if record.epoch == 1 or record.epoch % stride == 0:
            table.add_row(*_epoch_cells(record))
            shown.append(record.epoch)

    with user_errors(ctx):
        outcome = api.train(data, on_epoch=on_epoch, **settings)
    result = outcome.result
    if result.final is not None and result.final.epoch not in shown:
        table.add_row(*_epoch_cells(result.final))
    console.print(table)
    colour = {"diverged": "red", "early_stopped": "yellow"}.get(result.status, "green")
    reason = f" ({result.reason})" if result.reason else ""
    console.print(
        f"[bold {colour}]{result.status}[/] after {result.epochs_run} epochs, "
        f"{result.updates} updates{reason}; data {outcome.fingerprint[:19]}…"
    )


def _epoch_table() -> Table:
    table = Table(title=None, box=None, header_style="bold")
    for name in ("epoch", "train_loss", "val_loss", "train_acc", "val_acc", "grad_norm", "seconds"):
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
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
@click.option("--no-report", is_flag=True, help="Do not write the HTML report at the end.")
@click.pass_context
def sweep(ctx, spec, db, jobs, backend, scheduler, stale_after, dry_run, retry_failed, max_runs,
          quiet, no_report):  # fmt: skip
    """Run the grid of a sweep spec, logging every run and epoch to the database.

    Running the same spec again resumes it: only unfinished runs train.

    \b
    Example:
      nnlab sweep sweeps/quickstart.yaml -j 2
    """
    with user_errors(ctx):
        parsed = load_spec(spec)
        if dry_run:
            _print_plan(parsed, plan(parsed, max_runs, workers=1 if scheduler else jobs))
            return
        try:
            result = api.sweep(parsed, db, jobs=jobs, backend=backend, scheduler=scheduler,
                               retry_failed=retry_failed, max_runs=max_runs,
                               stale_after=stale_after, progress=not quiet,
                               report=not no_report)  # fmt: skip
        except KeyboardInterrupt as stop:
            _print_stopped(stop)
            click.echo("interrupted: in-flight runs are marked interrupted; run the same "
                       "command again to resume", err=True)  # fmt: skip
            ctx.exit(EXIT_INTERRUPTED)
        except (SweepStopped, StoreFault) as error:
            _print_stopped(error)
            click.echo(f"error: {error}", err=True)
            ctx.exit(1)
        click.echo(result.summary())
        _print_best(result.best(BEST_SHOWN), list(parsed.grid), result.metric)
    if result.report is not None:
        click.echo(f"report: {result.report}")
    elif result.report_error is not None:
        click.echo(f"warning: no report written ({result.report_error}); try again with: "
                   f"nnlab report {result.name}", err=True)  # fmt: skip


def _print_stopped(stop: BaseException) -> None:
    """Where the runs of a sweep that stopped stand, if its database could still be read."""
    result = getattr(stop, "sweep_result", None)
    if result is not None and result.accounted:
        click.echo(result.summary())


BEST_SHOWN = 10


def _print_best(best, axes: list[str], metric: str) -> None:
    """The best configurations: grid settings, final ``metric`` mean ± std over seeds."""
    rows = []
    for row in best.itertuples():
        # a configuration is its runs' settings without the seed
        settings = axis_values(from_values({**json.loads(row.configuration), "seed": 0}), axes)
        loss = _mean_std(getattr(row, f"final_{metric}_mean"), getattr(row, f"final_{metric}_std"))
        trouble = f"{row.diverged}/{row.runs}" if row.diverged else ""
        failed = f"{row.failed}/{row.runs}" if row.failed else ""
        rows.append((*settings, loss, trouble, failed))
    click.echo(f"best configurations (of {len(best)} shown), mean ± std over seeds:")
    _print_rows([*axes, f"final_{metric}", "diverged", "failed"], rows, "table")


def _mean_std(mean: float, std: float) -> str:
    """``mean ± std``; a lone clean seed has no std, and none at all shows a dash."""
    if math.isnan(mean):
        return "–"
    return f"{mean:.4g} ± {0 if math.isnan(std) else std:.2g}"


def _print_plan(spec, points) -> None:
    axes = list(spec.grid)
    click.echo(f"sweep {spec.name!r}: {len(points)} runs ({len(spec.seeds)} seeds each)")
    rows = [(*axis_values(p.config, axes), p.config.seed) for p in points]
    _print_rows([*axes, "seed"], rows, "table")


@cli.group()
def db() -> None:
    """The database schema: see where it stands, bring it up to date."""


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
    """Show the database's schema revision and this nnlab's."""
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
    _print_rows(result.columns, result.rows, fmt)
    if result.truncated:
        click.echo(f"note: output stopped after {len(result.rows)} rows; more rows were not "
                   "fetched (raise --max-rows, or narrow the query with WHERE or LIMIT)",
                   err=True)  # fmt: skip


@cli.command()
@db_option
@format_option
@click.pass_context
def sweeps(ctx, db, fmt):
    """List the sweeps in the database."""
    with user_errors(ctx):
        frame = connect(db).sweeps()
    _print_frame(frame, fmt)


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
@click.pass_context
def runs(ctx, db, sweep, status, fmt):
    """List runs with their hyperparameters and results (the run_summary view)."""
    with user_errors(ctx):
        frame = connect(db).runs(sweep=sweep, status=status or None)
    _print_frame(frame, fmt)


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
      nnlab report gd-variants learning-rates -o reports/compare.html
    """
    with user_errors(ctx):
        path = write_report(connect(db), sweeps, output, metric=metric, threshold=threshold)
    click.echo(str(path))


def _print_frame(frame, fmt: str) -> None:
    cells = frame.astype(object).where(frame.notna(), None)
    _print_rows(list(frame.columns), list(cells.itertuples(index=False, name=None)), fmt)


def _print_rows(columns: list[str], rows: list[tuple], fmt: str) -> None:
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif fmt == "json":
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        click.echo(json.dumps(records, default=str, indent=1))
    else:
        table = Table(box=None, header_style="bold")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*("" if v is None else _cell(v) for v in row))
        _console().print(table)
        click.echo(f"({len(rows)} rows)")


def _console() -> Console:
    # piped output gets room for wide tables instead of rich's 80-column default
    return Console() if sys.stdout.isatty() else Console(width=250)


def _cell(value) -> str:
    return format(value, ".6g") if isinstance(value, float) else str(value)


def main() -> None:
    cli(prog_name="nnlab")


if __name__ == "__main__":
    sys.exit(main())
