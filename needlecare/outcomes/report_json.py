"""One clinic's outcome report as JSON for analysts: the CSV's figure rows nested by injury and section, plus the
clinic, the filters, the small-number policy and the definitions."""

import json
from typing import Any

from needlecare.outcomes.report_rows import SECTION_TITLES, figure_rows
from needlecare.outcomes.reports import ReportData, injury_name


def render_json(data: ReportData) -> str:
    """The same figures as the CSV, nested: clinic → injuries → sections → figures; plus the context."""
    rows = figure_rows(data)
    injuries: list[dict[str, Any]] = []
    for injury in data.injuries:
        sections: list[dict[str, Any]] = []
        for section, title in SECTION_TITLES.items():
            figures = [r.json_record() for r in rows if r.injury == injury and r.section == section]
            if figures:
                sections.append({"section": section, "title": title, "figures": figures})
        injuries.append({"injury": injury, "name": injury_name(injury), "sections": sections})
    f = data.filters
    document = {
        "report": "needlecare outcome report",
        "format_version": 1,
        "clinic": {"id": data.clinic_id, "name": data.clinic_name, "timezone": data.clinic_timezone},
        "generated_at": data.generated_at.isoformat(),
        "filters": {
            "injury": f.injury,
            "practitioner_id": f.practitioner_id,
            "since": f.since.isoformat() if f.since else None,
            "until": f.until.isoformat() if f.until else None,
        },
        "policy": data.policy.model_dump(),
        "units": "Shares and rates are per 100; value, ci_low, ci_high and response_rate are null when suppressed.",
        "injuries": injuries,
        "definitions": [{"term": d.term, "text": d.text, "source": d.source} for d in data.definitions],
        "sources": list(data.sources),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
