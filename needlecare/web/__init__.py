"""The FastAPI app: the ingress API, survey pages and answers API, unsubscribe, staff login, cases and the
dashboard, and the development outbox. It records and emits events; it never runs a flow.

May import: everything below it (``models``, ``needlecare.core``, every stage package, ``dev``, ``flows``); not ``cli``.
"""
