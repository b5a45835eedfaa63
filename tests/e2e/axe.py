"""axe-core (4.12.1, as bundled by axe-playwright-python) run against a page, with ``target-size`` switched on."""

from pathlib import Path
from typing import Any

import axe_playwright_python
from playwright.sync_api import Page

AXE_JS = (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()
OPTIONS: dict[str, Any] = {"resultTypes": ["violations"], "rules": {"target-size": {"enabled": True}}}
# An email is a message, not a page: mail clients wrap it in their own page, so the page-structure rules
# (one main landmark, everything inside landmarks, a level-one heading) do not apply to it. Every other rule does.
PAGE_STRUCTURE = ("landmark-one-main", "region", "page-has-heading-one")
EMAIL_OPTIONS: dict[str, Any] = {
    **OPTIONS,
    "rules": {**OPTIONS["rules"], **{rule: {"enabled": False} for rule in PAGE_STRUCTURE}},
}


def violations(page: Page, options: dict[str, Any] = OPTIONS) -> list[str]:
    """Each axe rule the page breaks, with up to three of the elements that break it. (Not for a page served
    with a script-less sandbox CSP: nothing can run axe there; load a copy with ``page.set_content``.)"""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_JS)
    result = page.evaluate("options => window.axe.run(document, options)", options)
    found = []
    for v in result["violations"]:
        targets = ", ".join(" ".join(map(str, node["target"])) for node in v["nodes"][:3])
        found.append(f"{v['id']} ({v['impact']}): {v['help']} at {targets}")
    return found


def expect_no_violations(page: Page, where: str, *, email: bool = False) -> None:
    found = violations(page, EMAIL_OPTIONS if email else OPTIONS)
    assert found == [], f"axe-core on {where} ({page.url}):\n  " + "\n  ".join(found)
