"""The CLI's two output streams: results on stdout, diagnostics and errors (one line each) on stderr."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: message` on stderr and return the Exit to raise (messages are never read as markup)."""
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)
