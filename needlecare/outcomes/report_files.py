"""One clinic's outcome report in several formats at once, and its dated snapshot files.

:class:`Renderer` renders a report as HTML, CSV, JSON or PDF, sharing the charts and the HTML between formats.
:func:`write_snapshot` writes ``<out_dir>/<clinic>/<YYYY-MM-DD>/outcomes[-<injury>].<ext>``, each file atomically
(temporary file in the same directory, then rename). The date is the UTC date of generation.
"""

import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal, cast

from needlecare.outcomes.report_csv import render_csv
from needlecare.outcomes.report_html import ReportCharts, render_charts, render_html
from needlecare.outcomes.report_json import render_json
from needlecare.outcomes.report_pdf import render_pdf
from needlecare.outcomes.reports import ReportData, ReportError

Format = Literal["html", "csv", "json", "pdf"]
FORMATS: tuple[Format, ...] = ("html", "csv", "json", "pdf")


def check_formats(formats: Iterable[str]) -> list[Format]:
    """Formats in order, duplicates dropped; raises :class:`ReportError` naming the allowed ones."""
    chosen: list[Format] = []
    for fmt in formats:
        name = fmt.strip().lower()
        if name not in FORMATS:
            raise ReportError(f"unknown format '{fmt}'; choose from: {', '.join(FORMATS)}")
        if name not in chosen:
            chosen.append(cast(Format, name))
    if not chosen:
        raise ReportError(f"no format given; choose from: {', '.join(FORMATS)}")
    return chosen


class Renderer:
    """Renders one report in several formats, sharing the charts and the HTML between them."""

    def __init__(self, data: ReportData, charts: ReportCharts | None = None) -> None:
        self.data = data
        self._charts = charts
        self._html: str | None = None

    @property
    def charts(self) -> ReportCharts:
        """The charts (rendered on first use)."""
        if self._charts is None:
            self._charts = render_charts(self.data)
        return self._charts

    def render_charts(self) -> ReportCharts:
        """Render the charts now (they are otherwise rendered with the first HTML or PDF)."""
        return self.charts

    def html(self) -> str:
        """The HTML page (rendered once)."""
        if self._html is None:
            self._html = render_html(self.data, self.charts)
        return self._html

    def render(self, fmt: Format) -> bytes:
        """The report in one format, as bytes (UTF-8 for the text formats)."""
        if fmt == "html":
            return self.html().encode("utf-8")
        if fmt == "csv":
            return render_csv(self.data).encode("utf-8")
        if fmt == "json":
            return render_json(self.data).encode("utf-8")
        if fmt == "pdf":
            return render_pdf(self.data, html=self.html())
        raise ReportError(f"unknown format '{fmt}'")


def write_atomic(path: Path, content: bytes) -> Path:
    """Write ``content`` to ``path`` through a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def snapshot_path(data: ReportData, out_dir: Path, fmt: Format) -> Path:
    """``<out_dir>/<clinic>/<YYYY-MM-DD>/outcomes[-<injury>].<fmt>`` (the UTC date of generation)."""
    return out_dir / data.clinic_id / data.snapshot_date.isoformat() / f"{data.stem}.{fmt}"


def write_snapshot(
    data: ReportData,
    out_dir: Path,
    formats: Iterable[str],
    *,
    charts: ReportCharts | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the dated snapshot in each format (atomically); returns the paths, in the order of ``formats``.

    ``progress`` is called with the format's name after each file. A failing format (e.g. no Chromium for
    the PDF) raises after the formats before it were written; each written file is complete.
    """
    renderer = Renderer(data, charts)
    written: list[Path] = []
    for fmt in check_formats(formats):
        written.append(write_atomic(snapshot_path(data, out_dir, fmt), renderer.render(fmt)))
        if progress is not None:
            progress(fmt)
    return written
