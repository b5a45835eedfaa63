"""The default demo (`needlecare demo` with no options) as a practitioner first sees it: the dashboard and the PDF
lead with the headline figure, its n and its confidence interval, and draw no chart without bars.

Kept for a reviewer: test-output/screenshots/demo-dashboard.png and demo-report.pdf.
"""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright
from pypdf import PdfReader

from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.outcomes import report_pdf
from tests.conftest import free_port
from tests.e2e.axe import expect_no_violations
from tests.e2e.browser import SCREENSHOTS, launch_chromium, screenshot, serve_app

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
CI = re.compile(r"95 % CI \d+(\.\d+)? to \d+(\.\d+)? %")
N = re.compile(r"n = \d[\d,]*")


def test_the_default_demo_leads_with_the_headline(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEEDLECARE_", "PREFECT_"))}
    env.update({"NEEDLECARE_DATA_DIR": str(tmp_path), "NEEDLECARE_DATABASE_URL": url})
    demo = subprocess.run(
        [str(BIN / "needlecare"), "demo"], env=env, capture_output=True, text=True, timeout=1500, cwd=tmp_path
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    login = re.search(r"Log in at /dashboard as (\S+) / (\S+) ", demo.stdout)
    assert login, demo.stdout
    port = free_port()
    settings = Settings(env="test", data_dir=tmp_path, database_url=url, public_base_url=f"http://127.0.0.1:{port}")
    try:
        with serve_app(settings, port) as base_url, sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True).new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{base_url}/dashboard")
            page.get_by_label("Email").fill(login.group(1))
            page.get_by_label("Password").fill(login.group(2))
            page.get_by_role("button", name=re.compile("log in", re.I)).click()
            headline = page.locator("#headline")
            expect(headline.locator("[data-figure=headline-value]")).to_have_text(re.compile(r"\d+(\.\d+)? %"))
            expect(headline.locator("[data-figure=headline-ci]")).to_have_text(CI)
            expect(headline.locator("[data-figure=headline-n]")).to_have_text(N)
            for svg in page.locator("main svg").all():  # every chart drawn has at least one bar or line
                assert svg.locator("rect, path, line, polyline").count() > 0, svg.inner_html()[:500]
            screenshot(page, "demo-dashboard")
            expect_no_violations(page, "the demo's dashboard")

            if not report_pdf.chromium_available():
                pytest.skip("no Chromium on the server's PATH to print the PDF with")
            with page.expect_download(timeout=180_000) as download:
                page.get_by_role("link", name="Download PDF").click()
            pdf = tmp_path / "report.pdf"
            download.value.save_as(pdf)
            first = PdfReader(io.BytesIO(pdf.read_bytes())).pages[0].extract_text()
            assert "Pain improved at the latest outcome survey" in first, first[:1500]
            assert CI.search(first) and N.search(first), first[:1500]
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (SCREENSHOTS / "demo-report.pdf").write_bytes(pdf.read_bytes())
            browser.close()
    finally:
        database.get_engine(url).dispose()
