"""The rules core: the questionnaire and the ruleset as data, and the pure engine over them.

Loading and checking ``rules/`` (``loader``), the condition language
(``conditions``), answer validation (``questionnaire``), the engine and its
summaries, the rule cases and the translations. Plain Python over plain data:
nothing here imports Flask, SQLAlchemy or any other layer of the service (the
import contracts in pyproject.toml hold it so). A new rule operator goes in
``conditions.py`` (and ``rules/schema/condition.schema.json``).
"""
