"""The demo clinic's synthetic cohort (seeded patients, sessions and answer trajectories) and its run through
the real pipeline under an advanced clock.

May import: ``models``, ``needlecare.core`` and every stage package; not ``dev``, ``web`` or ``cli``.
"""
