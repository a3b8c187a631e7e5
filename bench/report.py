"""index.html for a bench run folder (and for bench/compare's output): the machine and
the command line, the summary, every plot, and links to every CSV and histogram, in
one self-contained page: no script, no font, nothing fetched from elsewhere; the
images are the PNG files beside it. Standard library only."""

from __future__ import annotations

import html
from pathlib import Path

STYLE = """body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; }
ul.files { columns: 3; font-size: 0.85em; }"""


def _text_block(folder: Path, name: str, title: str) -> str:
    path = folder / name
    if not path.exists():
        return ""
    return (f"<h2>{html.escape(title)}</h2>\n<pre>{html.escape(path.read_text())}</pre>\n"
            f"<p><a href=\"{html.escape(name)}\">{html.escape(name)}</a></p>\n")


def _links(folder: Path, pattern: str, title: str) -> str:
    files = sorted(folder.glob(pattern))
    if not files:
        return ""
    items = "".join(f"<li><a href=\"{html.escape(str(p.relative_to(folder)))}\">"
                    f"{html.escape(str(p.relative_to(folder)))}</a></li>\n" for p in files)
    return f"<h2>{html.escape(title)}</h2>\n<ul class=\"files\">\n{items}</ul>\n"


def write_index(folder: Path, title: str, command: str) -> Path:
    """Writes folder/index.html from what the folder holds; returns its path."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             f"<title>{html.escape(title)}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n"
             f"<h1>{html.escape(title)}</h1>\n"
             f"<p>Command: <code>{html.escape(command)}</code></p>\n"]
    parts.append(_text_block(folder, "summary.txt", "Summary"))
    parts.append(_text_block(folder, "compare.txt", "Comparison"))
    plots = sorted((folder / "plots").glob("*.png")) + sorted(folder.glob("*.png"))
    if plots:
        parts.append("<h2>Plots</h2>\n")
        for plot in plots:
            rel = html.escape(str(plot.relative_to(folder)))
            svg = plot.with_suffix(".svg")
            link = (f" (<a href=\"{html.escape(str(svg.relative_to(folder)))}\">SVG</a>)"
                    if svg.exists() else "")
            parts.append(f"<figure><img src=\"{rel}\" alt=\"{html.escape(plot.stem)}\">"
                         f"<figcaption>{html.escape(plot.stem)}{link}</figcaption></figure>\n")
    parts.append(_text_block(folder, "machine.txt", "Machine"))
    parts.append(_links(folder, "*.csv", "Results"))
    parts.append(_links(folder, "cases/*.csv", "Each case's loadgen row"))
    parts.append(_links(folder, "histograms/*.hgrm", "Latency histograms (HdrHistogram text)"))
    parts.append("</body>\n</html>\n")
    path = folder / "index.html"
    path.write_text("".join(parts))
    return path
