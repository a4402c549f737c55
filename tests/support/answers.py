"""Any valid submission to a questionnaire, as a hypothesis strategy built from its data."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from screening.rules.questionnaire import Questionnaire


@st.composite
def valid_answers(
    draw: st.DrawFn,
    questionnaire: Questionnaire,
    yes_no: st.SearchStrategy[bool] | None = None,
) -> dict[str, Any]:
    """Every item the answers so far enable, answered within its type, range and codes.

    ``yes_no`` draws the yes/no answers (all warning signs): by default either is as likely;
    mostly "no" reaches the rules below the warning signs more often.
    """
    answers: dict[str, Any] = {}
    for item in questionnaire.items:
        if item.enable_when is not None and not item.enable_when.evaluate(answers):
            continue
        codes = [o.code for o in item.options]
        if item.type == "integer":
            assert item.minimum is not None and item.maximum is not None
            answers[item.link_id] = draw(st.integers(item.minimum, item.maximum))
        elif item.type == "boolean":
            answers[item.link_id] = draw(st.booleans() if yes_no is None else yes_no)
        elif item.type == "choice":
            answers[item.link_id] = draw(st.sampled_from(codes))
        else:
            exclusive = [o.code for o in item.options if o.exclusive]
            others = [c for c in codes if c not in exclusive]
            answers[item.link_id] = draw(
                st.one_of(
                    st.sampled_from(exclusive).map(lambda c: [c]),
                    st.lists(st.sampled_from(others), min_size=1, unique=True),
                )
            )
    return answers
