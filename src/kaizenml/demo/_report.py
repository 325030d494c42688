"""A self-contained HTML report (tables, text and PNG figures embedded as base64).

Called by the demo; figures are rendered with matplotlib's object API (no pyplot, no global
backend change) and also written next to the report as PNG files.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..storage import atomic_write_bytes, atomic_write_text

__all__ = ["HtmlReport", "have_matplotlib"]

_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #17803d; font-weight: bold; } .bad { color: #b3261e; font-weight: bold; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; text-align: center; }
img { max-width: 520px; border: 1px solid #ddd; } pre { background: #f6f6f6; padding: 0.6em; }
"""


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.5g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    text = html.escape("" if value is None else str(value))
    if text in ("PASS", "promoted", "yes"):
        return f'<td class="ok">{text}</td>'
    if text in ("FAIL", "refused"):
        return f'<td class="bad">{text}</td>'
    return f"<td>{text}</td>"


@dataclass
class HtmlReport:
    """Collects sections and writes ``report.html`` plus one PNG per figure into ``folder``."""

    title: str
    folder: Path
    parts: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def pre(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
        body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def figure(
        self,
        name: str,
        caption: str,
        draw: Callable[[Any], None],
        *,
        size: tuple[float, float] = (6.4, 3.8),
    ) -> Path | None:
        """Render ``draw(fig)`` to ``<folder>/<name>.png`` and embed it; None without matplotlib."""
        if not have_matplotlib():
            return None
        from matplotlib.figure import Figure

        fig = Figure(figsize=size, dpi=100)
        draw(fig)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        png = buf.getvalue()
        path = self.folder / f"{name}.png"
        atomic_write_bytes(path, png)
        self.figures.append(path)
        b64 = base64.b64encode(png).decode("ascii")
        self.parts.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
        return path

    def write(self) -> Path:
        body = "\n".join(self.parts)
        doc = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>"
            f"<body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n"
        )
        path = self.folder / "report.html"
        atomic_write_text(path, doc)
        return path
