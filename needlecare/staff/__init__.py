"""Staff accounts: password hashing, login with lockout, server-side web sessions and their audit trail.

May import: ``models``, ``needlecare.core`` and any stage before it (it uses none today).
"""
