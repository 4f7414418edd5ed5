"""Every difference between SQLite and PostgreSQL that mailbot's SQL meets, in one place.

mailbot runs on both (SQLite by default). Code elsewhere asks this module rather than the
dialect's name:

* which database it is (:func:`is_postgresql`, :func:`is_sqlite`), for what only one of them
  has: PostgreSQL's advisory locks and ``LOCK TABLE``, SQLite's blob API; and
  :func:`sqlite_file`, the file a SQLite database is (its lock files beside it, its backup);
* :func:`upsert`: the INSERT that can say ``ON CONFLICT … DO NOTHING / DO UPDATE`` (both spell
  it alike, but SQLAlchemy keeps it in each dialect's own module);
* :func:`skip_locked`: a claim, ``FOR UPDATE SKIP LOCKED``, so that processes claiming work at
  the same moment take different rows;
* :func:`in_one_parameter`: ``column IN (values)`` with the values bound as one parameter;
* :class:`JsonSql`: JSON built in SQL;
* :func:`transaction_lock`: a lock across processes until the transaction ends.

Row locks need nothing from here: ``select(…).with_for_update()`` locks the rows on
PostgreSQL, and SQLite, which has no row locks, renders nothing for it. SQLite does not need
them: every transaction mailbot begins there is ``BEGIN IMMEDIATE`` (:mod:`db.engine`), so a
transaction that reads in order to write is already the only writer until it ends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    String,
    Table,
    any_,
    func,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.sql.selectable import GenerativeSelect
from sqlmodel import Session

# Whatever knows its database: a session, an engine, a connection, or the dialect itself.
Bind = Session | Engine | Connection | Dialect
Query = TypeVar("Query", bound=GenerativeSelect)


def dialect_of(bind: Bind) -> Dialect:
    if isinstance(bind, Dialect):
        return bind
    if isinstance(bind, Session):
        return bind.get_bind().dialect
    return bind.dialect


def is_postgresql(bind: Bind) -> bool:
    return dialect_of(bind).name == "postgresql"


def is_sqlite(bind: Bind) -> bool:
    return dialect_of(bind).name == "sqlite"


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite database; None for PostgreSQL or a database in memory."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database)


def upsert(bind: Bind, table: Table) -> postgresql.Insert | sqlite.Insert:
    """``INSERT INTO table`` in the spelling that takes ``on_conflict_do_nothing`` and
    ``on_conflict_do_update`` (the same arguments on both databases)."""
    if is_postgresql(bind):
        return postgresql.insert(table)
    return sqlite.insert(table)


def skip_locked(query: Query) -> Query:
    """``query`` claiming the rows it returns for this transaction: ``FOR UPDATE SKIP LOCKED``.

    PostgreSQL: a row another transaction has claimed is skipped, not waited for, so several
    processes claiming at once each take different rows, and none takes a row twice. SQLite
    renders nothing: the claiming transaction began with ``BEGIN IMMEDIATE`` and is the only
    writer, so nobody else holds a claim.
    """
    return query.with_for_update(skip_locked=True)


def in_one_parameter(
    bind: Bind,
    column: ColumnElement[Any],
    values: Sequence[int] | Sequence[str],
    element: Integer | String,
) -> ColumnElement[bool]:
    """``column IN values``, the values bound as one parameter of type ``element``.

    ``IN (…)`` binds one parameter per value; with thousands of values in several statements
    of a transaction that alone costs more than the statements' work, and SQLite caps the
    number of parameters. PostgreSQL gets one array, SQLite one JSON text that ``json_each``
    unpacks.
    """
    if is_postgresql(bind):
        return column == any_(literal(list(values), postgresql.ARRAY(element)))
    unpacked = func.json_each(literal(json.dumps(list(values)), String)).table_valued("value")
    return column.in_(select(unpacked.c.value))


class JsonSql:
    """JSON built in SQL: PostgreSQL's json functions, SQLite's JSON1."""

    def __init__(self, bind: Bind) -> None:
        self.postgres = is_postgresql(bind)

    def array(
        self, value: ColumnElement[Any], order: ColumnElement[Any], where: ColumnElement[bool]
    ) -> ColumnElement[Any]:
        """The values of the group's rows that pass ``where``, in ``order``; ``[]`` for none."""
        if self.postgres:
            aggregated = func.json_agg(postgresql.aggregate_order_by(value, order)).filter(where)
            return func.coalesce(aggregated, literal_column("'[]'::json"))
        # SQLite (3.40) has no ORDER BY inside an aggregate: it aggregates in the order the
        # rows come, so the caller groups a subquery ordered by ``order``.
        return func.json_group_array(value).filter(where)

    def embed(self, array: ColumnElement[Any]) -> ColumnElement[Any]:
        """An array from a subquery, as JSON inside an object (``[]`` when the join found none).

        SQLite passes JSON between statements as text and would embed it as a string; json()
        marks it as JSON again.
        """
        if self.postgres:
            return func.coalesce(array, literal_column("'[]'::json"))
        return func.json(func.coalesce(array, "[]"))

    def object(self, **members: ColumnElement[Any]) -> ColumnElement[Any]:
        pairs: list[Any] = []
        for name, value in members.items():
            pairs += [literal(name, String), value]
        build = func.json_build_object if self.postgres else func.json_object
        return build(*pairs)


def transaction_lock(connection: Connection | Session, key: int) -> None:
    """Hold the lock ``key`` (any 64-bit number every process agrees on) until the transaction
    ends, waiting for another process that holds it.

    PostgreSQL: a transaction-level advisory lock. SQLite: nothing to take, the transaction's
    ``BEGIN IMMEDIATE`` already holds the database's one write lock.
    """
    if is_postgresql(connection):
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
