"""Outcome figures per clinic × injury × time point: exact statistics, small-number suppression, the grouped
SQL queries, reports and their renderers (HTML, CSV, JSON, PDF), charts, stored dashboard figures, preset
periods, the non-responder list and the FHIR export.

May import: ``models``, ``needlecare.core``, ``intake``, ``followup``, ``safety``, ``surveys``.
"""
