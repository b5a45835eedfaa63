"""Attacks on the small-number suppression of the published outcome figures, on SQLite and PostgreSQL.

A synthetic clinic (``needlecare.demo`` cohorts, bulk-loaded, plus escalation cases) is reported at several
cohort sizes and filters. For each report the attacker reads only what is published, the JSON report and the
dashboard pages (overview at every outcome time point, and each injury's page), and works out every count it
can: each printed n, a share's numerator and denominator from its value and Wilson interval, a paired n from the
mean, SD and t-interval, the checked sessions from an escalation rate and its count, and every relation between
counts (due = answered + not answered, paired = responders + not, checked = with the event + without, followed
= events + censored, escalations = acknowledged + open, paired/mean answers <= answered), propagating integer
intervals (a "< 11" is 1-10). A hidden count of 1-10 that comes out exact is a leak. The truth comes from the
raw numbers the report keeps beside its figures, and every derived interval must contain it.
"""

import html as html_lib
import json
import math
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats as scipy_stats
from sqlmodel import Session, col, select

from models import Contact, Episode, Practitioner, SurveyResponse
from models.base import utcnow
from needlecare.core.catalogue import get_catalogue
from needlecare.core.settings import Settings
from needlecare.demo.bulk import bulk_load
from needlecare.demo.cohort import generate_cohort
from needlecare.demo.simulation import run_demo
from needlecare.outcomes import report_protect, reports
from needlecare.outcomes.report_json import render_json
from needlecare.safety.clinic_config import ReportPolicy
from needlecare.staff import auth
from needlecare.staff.labels import measure_name
from needlecare.web.app import create_app
from needlecare.web.dashboard.snapshots import WAIT_STATE, report_cache
from tests.outcome_rows import Ep, OutcomeRows

CLINIC = "attack-clinic"
EMAIL = "audit@attack.example"
PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
Z = 1.959963984540054
INF = math.inf
SMALL = (1, 10)
Key = tuple[str, ...]


# ------------------------------------------------------------------------------------------------- the attacker


class Attacker:
    """Integer intervals of named counts, published facts and the relations between counts."""

    def __init__(self) -> None:
        self.bounds: dict[Key, tuple[float, float]] = {}
        self.relations: list[tuple[Key, tuple[Key, ...]]] = []
        self.ratios: list[tuple[Key, Key, float]] = []  # count = rate / 100 * denominator

    def narrow(self, key: Key, lo: float, hi: float) -> None:
        old = self.bounds.get(key, (0.0, INF))
        self.bounds[key] = (max(old[0], lo), min(old[1], hi))
        assert self.bounds[key][0] <= self.bounds[key][1], f"{key}: {old} and {(lo, hi)} disagree"

    def exact(self, key: Key, value: float) -> None:
        self.narrow(key, value, value)

    def display(self, key: Key, text: str) -> None:
        """A printed count: a number, "< 11" (1-10), or a word (nothing known beyond >= 0)."""
        text = text.strip()
        if re.fullmatch(r"\d+", text):
            self.exact(key, int(text))
        elif text.startswith("<"):
            self.narrow(key, 1, int(text.lstrip("< ")) - 1)
        else:
            self.narrow(key, 0, INF)

    def relate(self, total: Key, *parts: Key) -> None:
        for key in (total, *parts):
            self.narrow(key, 0, INF)
        self.relations.append((total, parts))

    def at_most(self, total: Key, part: Key) -> None:
        self.relate(total, part, (*total, "minus", *part))

    def share(self, part: Key, total: Key, value: float, low: float | None, high: float | None) -> None:
        """A share per 100 with its Wilson interval: try every n until one fits (value and interval)."""
        if low is None or high is None:
            return
        p = value / 100.0
        found = []
        for n in range(1, 20001):
            k = round(p * n)
            if abs(100.0 * k / n - value) > 1e-6 * max(1.0, value):
                continue
            centre = (k / n + Z * Z / (2 * n)) / (1 + Z * Z / n)
            half = Z * math.sqrt(k / n * (1 - k / n) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
            if abs(100 * (centre - half) - low) < 1e-6 and abs(100 * (centre + half) - high) < 1e-6:
                found.append((k, n))
        if len(found) == 1:
            self.exact(part, found[0][0])
            self.exact(total, found[0][1])

    def mean_n(self, n_key: Key, sd: float | None, low: float | None, high: float | None) -> None:
        """The n of a mean from its SD and t-interval half-width."""
        if sd is None or low is None or high is None or sd == 0:
            return
        ns = np.arange(2, 20001)
        half = scipy_stats.t.ppf(0.975, ns - 1) * sd / np.sqrt(ns)
        fits = ns[np.abs(half - (high - low) / 2) < 1e-7 * max(1.0, (high - low) / 2)]
        if len(fits) == 1:
            self.exact(n_key, int(fits[0]))

    def solve(self) -> None:
        for _ in range(300):
            changed = False
            for count, denominator, rate in self.ratios:
                for a, b, factor in ((count, denominator, 100.0 / rate), (denominator, count, rate / 100.0)):
                    lo, hi = self.bounds.get(a, (0.0, INF))
                    if lo == hi and rate > 0:
                        value = round(lo * factor)
                        if self.bounds.get(b) != (value, value):
                            self.exact(b, value)
                            changed = True
            for total, parts in self.relations:
                t_lo, t_hi = self.bounds[total]
                los = [self.bounds[p][0] for p in parts]
                his = [self.bounds[p][1] for p in parts]
                updates = {total: (sum(los), sum(his))}
                for i, p in enumerate(parts):
                    other_hi = sum(h for j, h in enumerate(his) if j != i)
                    other_lo = sum(v for j, v in enumerate(los) if j != i)
                    updates[p] = (t_lo - other_hi, t_hi - other_lo)
                for key, (lo, hi) in updates.items():
                    old = self.bounds[key]
                    lo = max(old[0], math.ceil(lo) if math.isfinite(lo) else old[0])
                    hi = min(old[1], math.floor(hi) if math.isfinite(hi) else old[1])
                    assert lo <= hi, f"{key}: {old} -> {(lo, hi)} by {total} = {parts}"
                    if (lo, hi) != old:
                        self.bounds[key] = (lo, hi)
                        changed = True
            if not changed:
                return


# ------------------------------------------------------------------------------------------------- reading


SHARE_PARTS = {
    ("follow_up", "response_rate"): ("contacts_answered", "contacts_due"),
    ("follow_up", "loss_to_follow_up"): ("contacts_not_answered", "contacts_due"),
    ("follow_up", "patient_response_rate"): ("patients_answered", "patients_due"),
    ("adverse_events", "check_response_rate"): ("sessions_checked", "sessions_due_check"),
    ("recovery", "response_rate"): ("episodes_followed", "episodes_due"),
}


def read_json(attacker: Attacker, document: dict[str, Any]) -> None:
    for injury in document["injuries"]:
        slug = injury["injury"]
        for section in injury["sections"]:
            name = section["section"]
            rows = section["figures"]
            by = {(r["step"], r["measure"], r["metric"]): r for r in rows}
            for r in rows:
                read_row(attacker, slug, name, r, by)


def read_row(attacker: Attacker, slug: str, section: str, r: dict[str, Any], by: dict[Any, Any]) -> None:
    step, measure, metric = r["step"], r["measure"], r["metric"]
    if section == "channels":  # measure: "" for the time point's online / SMS split, else the channel group
        group: Key = (slug, "channels", step, measure)
        if r["unit"] == "count":
            attacker.display((*group, metric), r["display"] if r["value"] is None else str(r["value"]))
        elif metric == "response_rate":
            if r["n"] is not None:
                attacker.exact((*group, "contacts"), r["n"])
            if r["value"] is not None:
                attacker.share((*group, "answered"), (*group, "contacts"), r["value"], r["ci_low"], r["ci_high"])
        return
    if section in ("pain_change", "rom_change"):
        base = (slug, "change", step, measure)
        n_key = (*base, "n_paired")
        if r["unit"] == "count":
            attacker.display((*base, metric), r["display"] if r["value"] is None else str(r["value"]))
        elif r["n"] is not None:
            attacker.exact(n_key, r["n"])
        if metric == "mean_change" and r["value"] is not None:
            sd = by.get((step, measure, "sd"), {}).get("value")
            attacker.mean_n(n_key, sd, r["ci_low"], r["ci_high"])
        if metric == "responder_rate" and r["value"] is not None:
            attacker.share((*base, "responders"), n_key, r["value"], r["ci_low"], r["ci_high"])
        return
    if section == "trajectory":
        key = (slug, "trajectory", step, measure, "n")
        if metric == "n":
            attacker.display(key, r["display"] if r["value"] is None else str(r["value"]))
        elif r["n"] is not None:
            attacker.exact(key, r["n"])
        return
    scope: Key = (slug, section, step) if section == "follow_up" else (slug, section, measure)
    if section == "adverse_events":
        scope = (slug, "adverse_events")
        if metric in ("count", "per_100_sessions"):
            if metric == "count":
                attacker.display((*scope, measure), r["display"] if r["value"] is None else str(r["value"]))
            else:
                if r["n"] is not None:
                    attacker.exact((*scope, "sessions_checked"), r["n"])
                if r["value"] is not None:
                    attacker.share(
                        (*scope, measure), (*scope, "sessions_checked"), r["value"], r["ci_low"], r["ci_high"]
                    )
            return
    if section == "escalations":
        adverse = (slug, "adverse_events", "sessions_checked")
        if metric == "count":
            attacker.display((*scope, "count"), r["display"] if r["value"] is None else str(r["value"]))
        elif metric == "per_100_sessions":
            if r["n"] is not None:
                attacker.exact(adverse, r["n"])
            if r["value"] is not None:
                attacker.ratios.append(((*scope, "count"), adverse, r["value"]))
        elif metric == "ack_median_hours" and r["n"] is not None:
            attacker.exact((*scope, "acknowledged"), r["n"])
        return
    if section == "recovery":
        scope = (slug, "recovery")
    if r["unit"] == "count":
        attacker.display((*scope, metric), r["display"] if r["value"] is None else str(r["value"]))
        return
    parts = SHARE_PARTS.get((section, metric))
    if parts is not None:
        if r["n"] is not None:
            attacker.exact((*scope, parts[1]), r["n"])
        if r["value"] is not None:
            attacker.share((*scope, parts[0]), (*scope, parts[1]), r["value"], r["ci_low"], r["ci_high"])
    elif section == "recovery" and metric == "median_days" and r["n"] is not None:
        attacker.exact((*scope, "episodes_followed"), r["n"])


FIG = re.compile(
    r'<span class="v[^"]*">(?P<v>[^<]*)</span>'
    r'(?:<span class="ci">95 % CI (?P<lo>[-\d.]+) to (?P<hi>[-\d.]+)</span>)?'
    r'\s*<span class="n">n = (?P<n>[^<]*)</span>'
)


def figs(fragment: str) -> list[re.Match[str]]:
    return list(FIG.finditer(fragment))


def printed_n(attacker: Attacker, key: Key, match: re.Match[str]) -> None:
    attacker.display(key, html_lib.unescape(match["n"]))


def measure_slugs() -> dict[str, str]:
    return {measure_name(slug): slug for slug in get_catalogue().measures}


def read_injury_page(attacker: Attacker, slug: str, page: str) -> None:
    names = measure_slugs()
    for step, row in re.findall(r'<tr role="row" data-step="([^"]+)">(.*?)</tr>', page, re.S):
        cells = dict(re.findall(r'data-label="([^"]+)"(?: data-figure="[^"]+")?>(.*?)</td>', row, re.S))
        for f in figs(cells.get("Surveys due", "")):
            attacker.display((slug, "follow_up", step, "contacts_due"), html_lib.unescape(f["v"]))
            printed_n(attacker, (slug, "follow_up", step, "contacts_due"), f)
        for f in figs(cells.get("Response rate", "")):
            printed_n(attacker, (slug, "follow_up", step, "contacts_due"), f)
        for label, what in (("Mean pain", "trajectory"), ("Pain change", "change"), ("Pain responders", "change")):
            for f in figs(cells.get(label, "")):
                key = (
                    (slug, what, step, "pain_nprs", "n")
                    if what == "trajectory"
                    else (slug, "change", step, "pain_nprs", "n_paired")
                )
                printed_n(attacker, key, f)
        for label, what in (("Mean ROM", "trajectory"), ("ROM change", "change")):
            for name, item in re.findall(
                r'<li><span class="muted">([^<]+)</span>(.*?)</li>', cells.get(label, ""), re.S
            ):
                measure = names.get(html_lib.unescape(name))
                for f in figs(item):
                    if measure:
                        key = (
                            (slug, what, step, measure, "n")
                            if what == "trajectory"
                            else (slug, "change", step, measure, "n_paired")
                        )
                        printed_n(attacker, key, f)
    adverse: Key = (slug, "adverse_events")
    scope: Key
    for kind, row in re.findall(r'<tr data-event="([^"]+)">(.*?)</tr>', page, re.S):
        found = figs(row)
        if found:
            attacker.display((*adverse, kind), html_lib.unescape(found[0]["v"]))
            printed_n(attacker, (*adverse, kind), found[0])
        if len(found) > 1:
            printed_n(attacker, (*adverse, "sessions_checked"), found[1])
    table = re.search(r'<table id="escalations">(.*?)</table>', page, re.S)
    for rule, row in re.findall(r'<tr><th scope="row">([^<]+)</th>(.*?)</tr>', table[1] if table else "", re.S):
        rule_id = "all" if rule == "All cases" else rule.removeprefix("Rule ")
        found = figs(row)
        scope = (slug, "escalations", rule_id)
        attacker.display((*scope, "count"), html_lib.unescape(found[0]["v"]))
        printed_n(attacker, (*scope, "count"), found[0])
        printed_n(attacker, (*adverse, "sessions_checked"), found[1])
        printed_n(attacker, (*scope, "acknowledged"), found[2])
    recovery = re.search(r'<dl id="recovery">(.*?)</dl>', page, re.S)
    if recovery:
        found = figs(recovery[1])
        scope = (slug, "recovery")
        printed_n(attacker, (*scope, "episodes_followed"), found[0])
        for f, metric in zip(found[1:], ("episodes_due", "episodes_followed", "events"), strict=True):
            attacker.display((*scope, metric), html_lib.unescape(f["v"]))
            printed_n(attacker, (*scope, metric), f)


def read_channels(attacker: Attacker, page: str) -> None:
    """The dashboard's "Response by channel" table (templates/web/_dashboard_channels.html.j2)."""
    for slug, step, row in re.findall(
        r'<tr role="row" data-injury="([^"]+)" data-step="([^"]+)">(.*?)</tr>', page, re.S
    ):
        cells = dict(re.findall(r'data-figure="([^"]+)">(.*?)</td>', row, re.S))
        for name, metric in (("answered-online", "answered_online"), ("answered-sms", "answered_sms")):
            for f in figs(cells.get(name, "")):
                attacker.display((slug, "channels", step, "", metric), html_lib.unescape(f["v"]))
                printed_n(attacker, (slug, "channels", step, "", metric), f)
        for group, item in re.findall(r'<li data-group="([^"]+)">(.*?)</li>', cells.get("channel-groups", ""), re.S):
            key: Key = (slug, "channels", step, group)
            for f in figs(item):
                printed_n(attacker, (*key, "contacts"), f)
            counts = re.search(r"contacts ([^,]+), answered ([^<]+)</span>", item)
            assert counts is not None, item
            attacker.display((*key, "contacts"), html_lib.unescape(counts[1]))
            attacker.display((*key, "answered"), html_lib.unescape(counts[2]))


def read_overview(attacker: Attacker, step: str, page: str, *, headline: bool = True) -> None:
    for slug, row in re.findall(r'<tr role="row" data-injury="([^"]+)">(.*?)</tr>', page, re.S):
        cells = dict(re.findall(r'data-figure="([^"]+)">(.*?)</td>', row, re.S))
        for f in figs(cells.get("patients", "")):
            attacker.display((slug, "recovery", "episodes_due"), html_lib.unescape(f["v"]))
            printed_n(attacker, (slug, "recovery", "episodes_due"), f)
        for f in figs(cells.get("sessions", "")):
            attacker.display((slug, "adverse_events", "sessions"), html_lib.unescape(f["v"]))
            printed_n(attacker, (slug, "adverse_events", "sessions"), f)
        for f in figs(cells.get("response_rate", "")):
            printed_n(attacker, (slug, "follow_up", step, "contacts_due"), f)
        for name in ("pain_change", "pain_responders"):
            for f in figs(cells.get(name, "")):
                printed_n(attacker, (slug, "change", step, "pain_nprs", "n_paired"), f)
        for f in figs(cells.get("adverse", "")):
            printed_n(attacker, (slug, "adverse_events", "sessions_checked"), f)
    if not headline:  # the overview of one injury heads with the headline of all injuries (read unfiltered)
        return
    shown_n = re.search(r'data-figure="headline-n">n = ([^ ]+(?: 11)?) ', page)
    if shown_n:
        attacker.display(("headline", "n"), html_lib.unescape(shown_n[1]))
    response = re.search(r"\((\d+) of (\d+) patients due", page)
    if response:
        attacker.exact(("headline", "patients_answered"), int(response[1]))
        attacker.exact(("headline", "patients_due"), int(response[2]))
    due = re.search(r"patients due an outcome survey: (\d+)\)", page)
    if due:
        attacker.exact(("headline", "patients_due"), int(due[1]))
    counts = re.search(r"of patients \((\d+) of (\d+)\)", page)
    if counts:
        attacker.exact(("headline", "responders"), int(counts[1]))
        attacker.exact(("headline", "n"), int(counts[2]))


def relations(attacker: Attacker, data: reports.ReportData) -> None:
    """The relations between the counts the report describes (the same ones its definitions state)."""
    o = data.outcomes
    h: Key = ("headline",)
    s: Key
    attacker.relate((*h, "patients_due"), (*h, "patients_answered"), (*h, "patients_not_answered"))
    attacker.relate((*h, "n"), (*h, "responders"), (*h, "not_responders"))
    attacker.at_most((*h, "patients_answered"), (*h, "n"))
    for r in o.rows:
        s = (r.injury, "follow_up", r.step_id)
        attacker.relate((*s, "contacts_due"), (*s, "contacts_answered"), (*s, "contacts_not_answered"))
        attacker.relate((*s, "patients_due"), (*s, "patients_answered"), (*s, "patients_not_answered"))
        for change in (r.pain, *r.rom):
            if change is None:
                continue
            c = (r.injury, "change", r.step_id, change.measure)
            attacker.relate((*c, "n_paired"), (*c, "responders"), (*c, "not_responders"))
            attacker.at_most((*s, "contacts_answered"), (*c, "n_paired"))
    for p in data.trajectory:
        if p.step_id != "baseline":
            s = (p.injury, "follow_up", p.step_id, "contacts_answered")
            attacker.at_most(s, (p.injury, "trajectory", p.step_id, p.measure, "n"))
    for a in o.adverse:
        s = (a.injury, "adverse_events")
        attacker.relate((*s, "sessions_due_check"), (*s, "sessions_checked"), (*s, "not_checked"))
        for kind in a.events:
            attacker.relate((*s, "sessions_checked"), (*s, kind), (*s, kind, "without"))
    for e in o.escalations:
        s = (e.injury, "escalations", e.rule_id)
        attacker.relate((*s, "count"), (*s, "acknowledged"), (*s, "open"))
    for rec in o.recovery:
        s = (rec.injury, "recovery")
        attacker.relate((*s, "episodes_due"), (*s, "episodes_followed"), (*s, "not_followed"))
        attacker.relate((*s, "episodes_followed"), (*s, "events"), (*s, "censored"))
    for ch in data.channels:
        s, c = (ch.injury, "follow_up", ch.step_id), (ch.injury, "channels", ch.step_id)
        attacker.relate((*s, "contacts_answered"), (*c, "", "answered_online"), (*c, "", "answered_sms"))
        attacker.relate((*s, "contacts_due"), *((*c, g.group, "contacts") for g in ch.groups))
        attacker.relate((*s, "contacts_answered"), *((*c, g.group, "answered") for g in ch.groups))
        for g in ch.groups:
            attacker.relate((*c, g.group, "contacts"), (*c, g.group, "answered"), (*c, g.group, "not_answered"))


def truth(data: reports.ReportData) -> dict[Key, int]:
    """The raw value of every count the attacker names."""
    o = data.outcomes
    t: dict[Key, int] = {}
    s: Key
    c: Key
    hr = o.headline.raw
    t[("headline", "patients_due")], t[("headline", "patients_answered")] = hr.patients_due, hr.patients_answered
    t[("headline", "patients_not_answered")] = hr.patients_due - hr.patients_answered
    t[("headline", "n")], t[("headline", "responders")] = hr.paired, hr.responders
    t[("headline", "not_responders")] = hr.paired - hr.responders
    for r in o.rows:
        s, raw = (r.injury, "follow_up", r.step_id), r.raw
        t[(*s, "contacts_due")], t[(*s, "contacts_answered")] = raw.contacts_due, raw.contacts_answered
        t[(*s, "contacts_not_answered")] = raw.contacts_due - raw.contacts_answered
        t[(*s, "patients_due")], t[(*s, "patients_answered")] = raw.patients_due, raw.patients_answered
        t[(*s, "patients_not_answered")] = raw.patients_due - raw.patients_answered
        for change in (r.pain, *r.rom):
            if change is not None:
                c = (r.injury, "change", r.step_id, change.measure)
                t[(*c, "n_paired")], t[(*c, "patients")] = change.raw.n, change.raw.patients
                if change.threshold is not None:
                    t[(*c, "responders")] = change.raw.responders
                    t[(*c, "not_responders")] = change.raw.n - change.raw.responders
    for p in data.trajectory:
        t[(p.injury, "trajectory", p.step_id, p.measure, "n")] = p.raw.n
    for a in o.adverse:
        s = (a.injury, "adverse_events")
        t[(*s, "sessions")], t[(*s, "sessions_checked")] = a.raw.sessions, a.raw.sessions_checked
        t[(*s, "sessions_due_check")] = a.raw.sessions_due_check
        t[(*s, "not_checked")] = a.raw.sessions_due_check - a.raw.sessions_checked
        for kind, count in a.raw.counts.items():
            t[(*s, kind)], t[(*s, kind, "without")] = count, a.raw.sessions_checked - count
    for e in o.escalations:
        s = (e.injury, "escalations", e.rule_id)
        t[(*s, "count")], t[(*s, "acknowledged")] = e.raw.count, e.raw.ack_seconds.n
        t[(*s, "open")] = e.raw.count - e.raw.ack_seconds.n
    for rec in o.recovery:
        s, raw_r = (rec.injury, "recovery"), rec.raw
        t[(*s, "episodes_due")], t[(*s, "episodes_followed")] = raw_r.episodes_due, raw_r.episodes_followed
        t[(*s, "not_followed")] = raw_r.episodes_due - raw_r.episodes_followed
        t[(*s, "events")], t[(*s, "censored")] = raw_r.km.total_events, raw_r.episodes_followed - raw_r.km.total_events
    for ch in data.channels:
        c = (ch.injury, "channels", ch.step_id)
        t[(*c, "", "answered_online")], t[(*c, "", "answered_sms")] = ch.raw.answered_online, ch.raw.answered_sms
        for g in ch.groups:
            t[(*c, g.group, "contacts")], t[(*c, g.group, "answered")] = g.raw.contacts, g.raw.answered
            t[(*c, g.group, "not_answered")] = g.raw.contacts - g.raw.answered
    return t


def derived_small(attacker: Attacker, data: reports.ReportData) -> list[tuple[Key, int]]:
    """Every hidden count of 1-10 the attacker pinned, after checking it never contradicts the truth."""
    attacker.solve()
    known = truth(data)
    leaks = []
    for key, (lo, hi) in attacker.bounds.items():
        if key not in known:
            continue
        assert lo <= known[key] <= hi, (key, lo, hi, known[key])
        if lo == hi and SMALL[0] <= known[key] <= SMALL[1]:
            leaks.append((key, known[key]))
    return sorted(leaks)


# ------------------------------------------------------------------------------------------------- the data


def load(db: Session, settings: Settings, patients: int, seed: int) -> None:
    """A bulk-loaded synthetic cohort, 14 weeks back, plus escalation cases on some answered safety checks."""
    now = utcnow().replace(microsecond=0)
    cohort = generate_cohort(patients, seed, start=(now - timedelta(weeks=14)).replace(minute=0, second=0))
    bulk_load(db, cohort, settings=settings, clinic_id=CLINIC, now=now)
    rows = OutcomeRows(db, CLINIC)
    answered = db.exec(
        select(SurveyResponse.contact_id, SurveyResponse.session_id, Episode)
        .join(Episode, col(Episode.id) == col(SurveyResponse.episode_id))
        .join(Contact, col(Contact.id) == col(SurveyResponse.contact_id))
        .where(Episode.clinic_id == CLINIC, Contact.scope == "session")
        .order_by(col(SurveyResponse.id))
    ).all()
    for i, (contact_id, session_id, episode) in enumerate(answered[: max(len(answered) // 6, 3)]):
        assert episode.id is not None
        ep = Ep(episode.id, episode.patient_id, episode.injury, episode.started_at)
        opened = episode.started_at + timedelta(hours=25)
        rules = ["R8"] if i % 3 else ["R8", "R11"]
        acknowledged = opened + timedelta(hours=1 + i % 5) if i % 4 else None
        rows.escalation(
            ep,
            contact_id=contact_id,
            rules=rules,
            opened_at=opened,
            acknowledged_at=acknowledged,
            session_id=session_id,
        )
    rows.commit()


def login(client: TestClient) -> None:
    page = client.get("/login")
    token = CSRF.search(page.text)
    assert token, page.text
    done = client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf": token.group(1), "next": "/"})
    assert done.status_code == 303, done.text


@pytest.fixture
def client(settings: Settings, db: Session) -> Iterator[TestClient]:
    app = create_app(settings)
    setattr(app.state, WAIT_STATE, 120.0)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c
        report_cache(app).wait()


def attack(
    db: Session, client: TestClient, *, injury: str | None = None, practitioner: int | None = None
) -> list[tuple[Key, int]]:
    """Every hidden small count the JSON report and the dashboard pages of these filters give back."""
    data = reports.build_report(db, CLINIC, injury=injury, practitioner_id=practitioner)
    attacker = Attacker()
    relations(attacker, data)
    read_json(attacker, json.loads(render_json(data)))
    query = {
        "period": "all",
        **({"injury": injury} if injury else {}),
        **({"practitioner": str(practitioner)} if practitioner else {}),
    }
    for step in sorted({r.step_id for r in data.outcomes.rows if r.scope == "episode"}):
        page = client.get("/dashboard", params={**query, "step": step})
        assert page.status_code == 200, page.text
        read_overview(attacker, step, page.text, headline=injury is None)
        read_channels(attacker, page.text)
    for slug in data.injuries:
        page = client.get(f"/dashboard/injury/{slug}", params={k: v for k, v in query.items() if k != "injury"})
        assert page.status_code == 200, page.text
        read_injury_page(attacker, slug, page.text)
        read_channels(attacker, page.text)
    return derived_small(attacker, data)


@pytest.mark.parametrize(("patients", "seed"), [(60, 3), (180, 7), (500, 11)])
def test_no_hidden_small_count_can_be_derived_from_the_published_figures(
    db: Session, settings: Settings, client: TestClient, patients: int, seed: int
) -> None:
    load(db, settings, patients, seed)
    auth.create_user(db, CLINIC, EMAIL, "Audit", PASSWORD)
    login(client)
    data = reports.build_report(db, CLINIC)
    leaks = attack(db, client)
    for injury in data.injuries[:2]:
        leaks += attack(db, client, injury=injury)
    first = db.exec(
        select(Practitioner.id).where(Practitioner.clinic_id == CLINIC).order_by(col(Practitioner.id))
    ).first()
    leaks += attack(db, client, practitioner=first)
    assert leaks == []


def test_the_demo_clinic_run_through_the_pipeline_gives_back_no_hidden_count(
    db: Session, settings: Settings, client: TestClient
) -> None:
    """``needlecare demo``'s path: a cohort simulated through the real pipeline (escalations by the real rules)."""
    now = utcnow().replace(microsecond=0)
    cohort = generate_cohort(40, 5, start=(now - timedelta(weeks=14)).replace(minute=0, second=0))
    run_demo(db, cohort, settings=settings, clinic_id=CLINIC, until=now)
    auth.create_user(db, CLINIC, EMAIL, "Audit", PASSWORD)
    login(client)
    data = reports.build_report(db, CLINIC)
    assert data.outcomes.escalations, "the demo opened escalation cases, so their figures are attacked too"
    leaks = attack(db, client)
    for injury in data.injuries[:2]:
        leaks += attack(db, client, injury=injury)
    assert leaks == []


# ------------------------------------------------------------------------------------------------- the model itself


def test_bounds_pin_a_small_cell_beside_a_suppressed_one_and_withdrawing_the_total_frees_it() -> None:
    """12 = "< 11" + "suppressed" (>= 11) leaves only 1 + 11; once the total is withdrawn nothing is pinned."""
    policy = ReportPolicy()
    model = report_protect.Model()
    model.cell("total", 12)
    model.cell("small", 1)
    model.cell("other", 11)
    model.relate("total", "small", "other")
    model.publishers["total"] = [report_protect.Publisher((0,), "value")]
    bounds = report_protect.closure(model, policy)
    assert bounds["small"] == (1, 1) and bounds["other"] == (11, 11)
    assert report_protect.leaks(model, bounds, policy) == ["small"]
    assert report_protect.choose(model, bounds, "small") == "total"
    del model.publishers["total"]
    bounds = report_protect.closure(model, policy)
    assert report_protect.leaks(model, bounds, policy) == []


def test_a_chain_of_relations_is_followed_to_the_published_cell() -> None:
    """due (shown) = answered (pinned by a paired n equal to it) + not answered (small): the paired n goes."""
    policy = ReportPolicy()
    model = report_protect.Model()
    for key, value in (("due", 40), ("answered", 34), ("rest", 6), ("paired", 34)):
        model.cell(key, value)
    model.relate("due", "answered", "rest")
    model.slack("answered", "paired")
    model.publishers["due"] = [report_protect.Publisher((0,), "value")]
    model.publishers["paired"] = [report_protect.Publisher((1,), "value"), report_protect.Publisher((2,), "n")]
    bounds = report_protect.closure(model, policy)
    assert bounds["rest"] == (6, 6)
    assert report_protect.choose(model, bounds, "rest") == "due"  # one figure to hide, against two
