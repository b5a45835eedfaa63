"""The one-box development stack behind ``make run`` (Prefect server, served flows, web app, demo clinic and
staff login) and the local SMTP mail capture behind ``/outbox``.

May import: ``models``, ``needlecare.core``, every stage package and ``demo``; not ``web`` or ``cli``.
"""
