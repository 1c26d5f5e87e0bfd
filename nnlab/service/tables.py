"""A sweep's ranking as its page asks for it: filtered by its settings, sorted by any column,
and one page of rows at a time, with the number of rows the filters kept."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nnlab.checks import InputError, check_choice, close_matches
from nnlab.service.curves import BadQuery
from nnlab.service.records import json_value

MAX_LIMIT = 1000
ORDERS = ("asc", "desc")
# query parameters that are not filters (token: the service's own, see guards.TokenCheck)
NOT_FILTERS = ("limit", "offset", "sort", "order", "token")
INTEGER = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class TableQuery:
    """Which rows of a table to send: those matching every filter (a column and the values it
    may have), sorted by ``sort`` unless None, from ``offset``, at most ``limit`` (None: all)."""

    limit: int | None = None
    offset: int = 0
    sort: str | None = None
    descending: bool = False
    filters: dict[str, list[str]] = field(default_factory=dict)


def check_table_query(items: Iterable[tuple[str, str]]) -> TableQuery:
    """The ``TableQuery`` of a request's query parameters (``items``, repeats included): a
    repeated filter keeps the rows with any of its values. ``BadQuery`` for a limit, offset or
    order the route does not accept; column names are checked against the table by ``page``."""
    given: dict[str, list[str]] = {}
    for name, value in items:
        given.setdefault(name, []).append(value)
    last = {name: values[-1] for name, values in given.items()}
    limit, offset = last.get("limit"), last.get("offset", "0")
    if limit is not None and not (INTEGER.fullmatch(limit) and 1 <= int(limit) <= MAX_LIMIT):
        raise BadQuery(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    if not INTEGER.fullmatch(offset):
        raise BadQuery(f"offset must be a non-negative integer, got {offset!r}")
    order = choice("order", last.get("order", "asc"), ORDERS)
    return TableQuery(
        limit=None if limit is None else int(limit),
        offset=int(offset),
        sort=last.get("sort") or None,
        descending=order == "desc",
        filters={name: values for name, values in given.items() if name not in NOT_FILTERS},
    )


def page(table: pd.DataFrame, settings: list[str], query: TableQuery) -> tuple[pd.DataFrame, int]:
    """The page of ``table`` that ``query`` asks for, and how many rows its filters kept.

    Filters may name only ``settings``, and ``sort`` any column (``BadQuery`` otherwise, with
    its near misses); sorting is stable, missing values last in either order.
    """
    kept = table[matching(table, settings, query.filters)]
    if query.sort is not None:
        choice("sort column", query.sort, table.columns)
        kept = sorted_by(kept, query.sort, query.descending)
    end = None if query.limit is None else query.offset + query.limit
    return kept.iloc[query.offset : end], len(kept)


def matching(table: pd.DataFrame, settings: list[str], filters: dict[str, list[str]]):
    """Which rows of ``table`` have, in each column of ``filters``, one of its values: a
    boolean array of shape (len(table),)."""
    keep = np.ones(len(table), dtype=bool)
    for name, values in filters.items():
        choice("filter", name, settings)
        keep &= np.fromiter((matches(cell, values) for cell in table[name]), bool, len(table))
    return keep


def matches(cell, values: list[str]) -> bool:
    """Whether ``cell`` is one of ``values`` as the JSON API shows it: text as it is, numbers
    as numbers (``"0.1"`` matches 0.1, ``"32"`` 32 and 32.0), a missing value as ``null``."""
    cell = json_value(cell)
    if cell is None or isinstance(cell, bool):
        return json.dumps(cell) in values
    if isinstance(cell, int | float):
        return any(_number(value) == cell for value in values)
    return str(cell) in values


def sorted_by(table: pd.DataFrame, column: str, descending: bool) -> pd.DataFrame:
    """``table`` sorted on ``column``, ties in their order, missing values last; a column that
    mixes numbers and text sorts as text."""
    order = {"ascending": not descending, "na_position": "last", "kind": "stable"}
    try:
        return table.sort_values(column, **order)
    except TypeError:
        return table.sort_values(column, key=lambda cells: cells.map(_text), **order)


def choice(name: str, value: str, choices) -> str:
    """``value`` if it is one of ``choices``, else ``BadQuery`` naming them and its near misses."""
    try:
        return check_choice(name, value, choices)
    except InputError as error:
        raise BadQuery(str(error), close_matches(value, list(choices))) from None


def _text(cell) -> str | None:
    return None if pd.isna(cell) else str(cell)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
