"""Safety escalation rules (domain.md §6) as versioned data, and a pure evaluator.

The rules live in ``rules/escalation.toml`` at the project root (its header documents the format). Each rule
has an id, a version, a tier, a condition written as data (``all`` / ``any`` of ``{var, op, value}`` tests;
nothing is evaluated as code), an optional ``upgrade`` to a more urgent tier, a patient message, a
practitioner message and a source.

- ``variables``: the tiers, the variables a condition may name and the operators each kind of variable takes;
- ``conditions``: the condition language (tests, ``all`` / ``any``) and how a condition holds;
- ``keywords``: tolerant matching of the patient's own words (case, accents, punctuation, misspellings);
- ``ruleset``: the rules file's schema, its loader and the shipped rule set;
- ``evaluation``: the inputs a rule may look at and :func:`~needlecare.safety.rules.evaluation.evaluate`.

Evaluation is pure: no database, no clock, no I/O. It returns the fired rules, the highest tier, the rule-set
version and the inputs, so the caller can store "rule version, inputs, result" for the audit log.

Safety properties:
- a test on a variable with no value is false, and the language has no negation, so a missing answer never
  fires a rule that needs it and no rule can remove another rule's escalation (free-text keywords only add);
- every problem in the file is a ``RulesError`` naming the file, the field path and what is allowed.

Framework-free: imports only pydantic, ``needlecare.core`` and ``needlecare.followup.questions``.
"""
