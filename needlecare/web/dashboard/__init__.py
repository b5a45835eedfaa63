"""The practitioner dashboard behind the login: the routes (:mod:`.routes`), the checked query filters
(:mod:`.filters`), the stored-snapshot cache and background recomputation (:mod:`.snapshots`) and the view models
the templates receive (:mod:`.views`). Import from those modules; this package re-exports nothing.

May import: ``models``, ``needlecare.core``, the stage packages (``outcomes`` above all) and the web app's own
``auth``, ``deps`` and ``templating``.
"""
