"""The process that evaluates decision rules: ``python -m panjereh.requests.rule_worker``.

Rules are CEL expressions written by agencies. CEL always terminates, but a rule can still be
made expensive (a comprehension nested in a comprehension over a large list takes seconds to
minutes in the CEL library we use), and evaluation runs in native code that cannot be
interrupted from Python. So rules run here, in a child process the service can kill: the
service gives each decision a time budget and, past it, kills this process and starts a new
one (:class:`panjereh.requests.rules.RuleEvaluator`).

Protocol: once started, the worker writes ``{"ready": true}`` (so its start-up, most of a
second, is never billed to a decision's time budget); then one JSON object per line on
stdin, ``{"rules": [{"id", "when"}], "variables": {...}, "now": "<RFC 3339>"}``; one per line
on stdout, ``{"match": <index or null>, "error": <text or null>}``: the index of the first
rule whose expression is ``true``, or why evaluation failed.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from functools import lru_cache
from typing import Any

import cel


@lru_cache(maxsize=2048)
def _program(expression: str) -> cel.Program:
    return cel.compile(expression)


def evaluate(message: dict[str, Any]) -> dict[str, Any]:
    variables = dict(message["variables"])
    variables["now"] = datetime.fromisoformat(message["now"])
    for index, rule in enumerate(message["rules"]):
        try:
            value = _program(rule["when"]).execute(variables)
        except Exception as exc:
            return {"match": None, "error": f"rule {rule['id']}: {type(exc).__name__}: {exc}"}
        if value is True:
            return {"match": index, "error": None}
        if value is not False:
            return {
                "match": None,
                "error": f"rule {rule['id']}: not a boolean ({type(value).__name__})",
            }
    return {"match": None, "error": None}


def main() -> None:
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            answer = evaluate(json.loads(line))
        except Exception as exc:
            answer = {"match": None, "error": f"bad request: {type(exc).__name__}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
