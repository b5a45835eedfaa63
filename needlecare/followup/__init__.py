"""What the patient is sent and when: protocol packs and the questions they ask (the answer vocabulary),
planning contacts, the dispatcher's send-time checks, the outbox, message composition (aftercare notice,
check-ins, calendar file, unsubscribe) and delivery through Apprise.

May import: ``models``, ``needlecare.core``, ``needlecare.intake``.
"""
