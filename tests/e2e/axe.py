"""axe-core (4.12.1, as bundled by axe-playwright-python) run against a page, with ``target-size`` switched on."""

from pathlib import Path
from typing import Any

import axe_playwright_python
from playwright.sync_api import Page

AXE_JS = (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()
OPTIONS: dict[str, Any] = {"resultTypes": ["violations"], "rules": {"target-size": {"enabled": True}}}


def violations(page: Page) -> list[str]:
    """Each axe rule the page breaks, with up to three of the elements that break it."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_JS)
    result = page.evaluate("options => window.axe.run(document, options)", OPTIONS)
    found = []
    for v in result["violations"]:
        targets = ", ".join(" ".join(map(str, node["target"])) for node in v["nodes"][:3])
        found.append(f"{v['id']} ({v['impact']}): {v['help']} at {targets}")
    return found


def expect_no_violations(page: Page, where: str) -> None:
    found = violations(page)
    assert found == [], f"axe-core on {where} ({page.url}):\n  " + "\n  ".join(found)
