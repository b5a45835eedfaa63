"""needlecare: follow-up after dry needling, one package per stage of the data flow.

Read the packages in this order; each may import ``models`` and the packages before it, never one after it
(``tests/test_layout.py`` checks this, and that no module passes 500 lines):

``core``       what every stage uses: settings, database, clock, events, signing, tokens, rendering,
               the clinical catalogue, row claims, SQL helpers
``intake``     a clinic and its session-completed events: validate, store, emit
``followup``   protocols and the questions they ask, planning, dispatch, the outbox, messages and delivery
``safety``     escalation rules, patient advice, cases, SLAs, alerts, the clinic's configuration file
``surveys``    a survey link's context and recording an answer (rules evaluated in the same transaction)
``outcomes``   statistics, small-number suppression, outcome queries, reports, charts, stored figures, FHIR
``staff``      staff logins and web sessions
``demo``       the synthetic cohort and its run through the real pipeline
``dev``        the one-box development stack and the local mail capture
``web``, ``cli``  the FastAPI app and the Typer commands, on top of everything

``flows/`` (beside this package) orchestrates the stages in Prefect and sits below ``web`` and ``cli``.
"""
