"""Plain-text tables for the command line."""

from __future__ import annotations


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Print rows under a header, columns padded to their widest cell."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
