"""Answering a survey: the contact behind a signed link, the context its page shows, and recording an answer
with its rule evaluation, case and event in one transaction; and the survey page's error messages in the words
the page shows.

May import: ``models``, ``needlecare.core``, ``intake``, ``followup``, ``safety``.
"""
