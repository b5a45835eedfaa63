"""The session-completed contract: clinics and their webhook secrets, validating and storing a completed
session in one transaction, emitting its event, and the sample event and demo clinic.

May import: ``models``, ``needlecare.core``.
"""
