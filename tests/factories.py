"""Plain functions that build valid inputs; tests change one field at a time."""

import copy
from datetime import timedelta
from typing import Any

from models.base import utcnow

PATIENT_NAME, PATIENT_LAST, PATIENT_EMAIL, PATIENT_PHONE = "Sam", "Okafor", "sam@example.org", "+15551234567"


def event_body(n: int = 1, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "clinic_id": "riverside-physio",
        "external_session_id": f"S-{n:06d}",
        "completed_at": (utcnow() - timedelta(minutes=10)).isoformat(),
        "practitioner": {"external_id": "P-7", "name": "Dana Reyes", "email": "dana@riverside.example"},
        "patient": {
            "external_id": f"PT-{n}",
            "first_name": PATIENT_NAME,
            "last_name": PATIENT_LAST,
            "email": PATIENT_EMAIL,
            "phone": PATIENT_PHONE,
            "timezone": "America/New_York",
            "consent": {"email": True, "sms": False},
        },
        "injury": "achilles_tendinopathy",
        "side": "left",
        "regions_needled": ["calf"],
        "muscles_needled": ["gastrocnemius", "soleus"],
        "baseline": {"pain_nprs": 6, "rom": {"measure": "wblt_cm", "value": 7.5}},
    }
    body = copy.deepcopy(body)
    for path, value in overrides.items():
        target = body
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return body
