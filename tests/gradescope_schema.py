"""Gradescope's results.json specification as a JSON Schema, and the checks every
results.json the tests produce must pass.

Written from https://gradescope-autograders.readthedocs.io/en/latest/specs/ ("Output
format", "Controlling Test Case Visibility", "Test case status", "Output String
Formatting", "Leaderboards"). Keys the specification does not name are refused, so a
typo cannot pass unseen; the fields this grader promises (every test's number, tags,
status and output format, say) are required although Gradescope has them optional.
"""

from __future__ import annotations

import jsonschema

VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
FORMAT = {"enum": ["text", "html", "simple_format", "md", "ansi"]}

TEST = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "number", "score", "max_score", "status", "output", "output_format", "tags", "visibility"],
    "properties": {
        "score": {"type": "number"},
        "max_score": {"type": "number", "minimum": 0},
        "status": {"enum": ["passed", "failed"]},
        "name": {"type": "string", "minLength": 1},
        "name_format": FORMAT,
        "number": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)*$"},
        "output": {"type": "string"},
        "output_format": FORMAT,
        "tags": {"type": "array", "items": {"type": "string"}},
        "visibility": VISIBILITY,
        "extra_data": {"type": "object"},
    },
}

LEADERBOARD_ENTRY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "value"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "value": {"type": ["number", "string"]},
        "order": {"enum": ["asc", "desc"]},
    },
}

RESULTS = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Gradescope autograder results.json",
    "type": "object",
    "additionalProperties": False,
    "required": ["score", "execution_time", "output", "output_format", "visibility", "stdout_visibility", "tests"],
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "number", "minimum": 0},
        "output": {"type": "string"},
        "output_format": FORMAT,
        "test_output_format": FORMAT,
        "test_name_format": FORMAT,
        "visibility": VISIBILITY,
        "stdout_visibility": VISIBILITY,
        "extra_data": {"type": "object"},
        "tests": {"type": "array", "items": TEST},
        "leaderboard": {"type": "array", "items": LEADERBOARD_ENTRY},
    },
}

jsonschema.Draft202012Validator.check_schema(RESULTS)


def validate(doc: dict) -> None:
    """Raise if ``doc`` does not follow the specification or says more than a student may see."""
    jsonschema.Draft202012Validator(RESULTS).validate(doc)
    tests = doc["tests"]
    if tests:
        # The score is the tests' points plus the late penalty and overrides, if any.
        adjustments = doc.get("extra_data", {}).get("submission", {}).get("adjustments", [])
        expected = sum(t["score"] for t in tests) + sum(a["points"] for a in adjustments)
        assert abs(doc["score"] - expected) < 1e-6, "the score is not the sum of the tests and adjustments"
        numbers = [t["number"] for t in tests]
        assert len(set(numbers)) == len(numbers), "two tests share a number"
    hidden = [t for t in tests if t["visibility"] != "visible"]
    if hidden:
        # Gradescope hides the total while tests are hidden; the top-level output must too.
        total = sum(t["max_score"] for t in tests)
        assert f"{doc['score']:g} / {total:g}" not in doc["output"], "the top-level output gives the total away"
