"""The command line's plan of a request: :func:`~bert_lrp.attribution.plan.plan_request`, with
the one message whose wording names two flags at once (``--word/--token-index need a
token-classification model``: a word chosen for a model that has none) kept as the commands have
always written it. Every other request error reaches the error boundary as it is, its field
shown as the flag there."""
from __future__ import annotations

from typing import Union

from ..attribution.plan import NEEDS_TOKEN_MODEL, Plan, Request, plan_request
from ..errors import RequestError, UsageError


def plan_for_command(model, tokenizer, request: Union[Request, Plan]) -> Plan:
    """``request`` checked once against ``model`` (see the module docstring)."""
    try:
        return plan_request(model, tokenizer, request)
    except RequestError as error:
        if error.field in ("word", "token_index") and error.message == NEEDS_TOKEN_MODEL:
            raise UsageError(f"--word/--token-index {NEEDS_TOKEN_MODEL}") from None
        raise
