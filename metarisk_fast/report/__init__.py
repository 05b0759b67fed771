"""What a person reads: the Markdown / JSON report of forecast evaluations (render.py) and the
PNG plots every application writes, on matplotlib's file-only backend (plots.py)."""
from .plots import png_bytes, pyplot, write_plots
from .render import markdown_table, render_markdown, write_report, young_rows

__all__ = ["png_bytes", "pyplot", "write_plots", "markdown_table", "render_markdown", "write_report", "young_rows"]
