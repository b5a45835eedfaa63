"""One clinic's outcome report as PDF: the HTML page printed by headless Chromium, so it shows the same figures.

The browser is ``$NEEDLECARE_CHROMIUM`` or the first of chromium / chromium-browser / google-chrome on PATH; it runs
with the network disabled, in its own process group, and is killed after the timeout.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from needlecare.outcomes.report_html import render_html
from needlecare.outcomes.reports import ReportData, ReportError

CHROMIUM_ENV = "NEEDLECARE_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
PDF_TIMEOUT_SECONDS = 90.0


class PdfUnavailable(ReportError):
    """No Chromium to print the PDF with."""


class PdfFailed(ReportError):
    """Chromium ran but did not produce a PDF."""


def find_chromium() -> str:
    """The Chromium binary: ``$NEEDLECARE_CHROMIUM``, else chromium / chromium-browser / google-chrome on PATH."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise PdfUnavailable(f"{CHROMIUM_ENV}={configured} is not an executable; point it at a Chromium binary")
        return found
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise PdfUnavailable(
        "PDF reports need Chromium (headless) and none was found on PATH (looked for "
        f"{', '.join(CHROMIUM_NAMES)}): install it (Debian/Ubuntu: `apt-get install chromium`) or set "
        f"{CHROMIUM_ENV} to the browser binary; HTML, CSV and JSON work without it"
    )


def chromium_available() -> bool:
    """True when :func:`find_chromium` finds a browser."""
    try:
        find_chromium()
    except PdfUnavailable:
        return False
    return True


def render_pdf(data: ReportData, *, html: str | None = None, timeout: float = PDF_TIMEOUT_SECONDS) -> bytes:
    """The HTML report printed to PDF by headless Chromium (network disabled; killed after ``timeout`` s)."""
    binary = find_chromium()
    page = html if html is not None else render_html(data)
    with tempfile.TemporaryDirectory(prefix="needlecare-pdf-") as tmp:
        work = Path(tmp)
        source = work / "report.html"
        target = work / "report.pdf"
        source.write_text(page, encoding="utf-8")
        command = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={work / 'profile'}",
            f"--print-to-pdf={target}",
            "--no-pdf-header-footer",
            source.as_uri(),
        ]
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise PdfFailed(f"Chromium did not finish printing the PDF within {timeout:g} s") from None
        finally:
            _kill_group(process)  # Chromium's helpers, if any outlived the browser
        if process.returncode != 0 or not target.exists():
            tail = stderr.decode("utf-8", "replace").strip()[-600:]
            raise PdfFailed(f"Chromium could not print the PDF (exit {process.returncode}): {tail}")
        content = target.read_bytes()
    if not content.startswith(b"%PDF"):
        raise PdfFailed("Chromium wrote a file that is not a PDF")
    return content


def _kill_group(process: "subprocess.Popen[bytes]") -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.returncode is None:
        process.wait()
