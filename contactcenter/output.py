"""Rows to the terminal: a rich table for people, ``--json`` and ``--csv`` for scripts."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

Format = Literal["table", "json", "csv"]


def emit_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: Format, title: str = "") -> None:
    """Print ``rows`` (dicts with at least ``columns``) in the chosen format on standard output."""
    if fmt == "json":
        json.dump(list(rows), sys.stdout, ensure_ascii=False, indent=2, default=str)
        sys.stdout.write("\n")
        return
    if fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return
    table = Table(title=title or None)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console().print(table)
