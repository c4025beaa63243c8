"""The `contactcenter` sub-commands, one module per command group; the argument types they share."""

from __future__ import annotations

from datetime import datetime

import click

#: A database id (a call, ticket, callback): positive, and small enough for SQLite's and PostgreSQL's bigint,
#: so a mistyped 30-digit id is a usage error rather than an overflow deep in the driver.
ROW_ID = click.IntRange(1, 2**63 - 1)

#: Dates a person can mean at this desk; 9999-12-31 is a typo, and past 2100 the holiday tables end.
EARLIEST_YEAR, LATEST_YEAR = 2000, 2100


class BadValue(click.ClickException):
    """A value the user gave that cannot be right (a date in year 9999, a call that does not exist): one line
    naming the option, without the usage text, and exit 2 like click's own usage errors."""

    exit_code = 2

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")


def check_year(moment: datetime, option: str) -> datetime:
    """``moment`` if its year is one a desk can mean (2000–2100), else a one-line error naming the option."""
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise BadValue(option, f"{moment:%Y-%m-%d} is outside the years {EARLIEST_YEAR}–{LATEST_YEAR}")
    return moment
