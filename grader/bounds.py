"""Caps on what the student's code says, before it reaches results and reports.

Class names, exception messages, reprs and tracebacks come from the worker, so a
submission chooses their size: a class named with four million characters once made a
12 MB results.json. Every string is cut to a length a person reads, every list and dict
to a number of entries a report shows, and nesting to a depth the reports render.
"""

from __future__ import annotations

from typing import Any

MESSAGE_CHARS = 4_000  # a check's message, a note, a reason
DETAIL_CHARS = 2_000  # each string in a check's details or a cell's error
ITEMS = 200  # entries of any list or dict
DEPTH = 8
TRACEBACK_CHARS = 8_000


def cut(text: Any, limit: int = MESSAGE_CHARS) -> str:
    """``text`` as a string of at most ``limit`` characters, saying how much was cut."""
    text = text if isinstance(text, str) else str(text)
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit:,} more characters cut]"


def bounded(value: Any, *, chars: int = DETAIL_CHARS, items: int = ITEMS, depth: int = DEPTH) -> Any:
    """A copy of plain data with every string, collection and nesting level capped.
    Tensors and numbers pass unchanged (their size is the wire format's business)."""
    if isinstance(value, str):
        return cut(value, chars)
    if depth <= 0 and isinstance(value, (list, tuple, dict)):
        return "[nested too deeply; cut]"
    if isinstance(value, (list, tuple)):
        out = [bounded(v, chars=chars, items=items, depth=depth - 1) for v in value[:items]]
        if len(value) > items:
            out.append(f"[{len(value) - items:,} more entries cut]")
        return out
    if isinstance(value, dict):
        capped: dict[Any, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i == items:
                capped["[cut]"] = f"{len(value) - items:,} more entries cut"
                break
            key = cut(k, 200) if isinstance(k, str) else k
            capped[key] = (
                cut(v, TRACEBACK_CHARS) if key == "traceback" else bounded(v, chars=chars, items=items, depth=depth - 1)
            )
        return capped
    return value


def bound_result(result) -> None:
    """Cap, in place, every string of a SubmissionResult that the student's code could size."""
    result.reason = cut(result.reason)
    result.notes = [cut(n) for n in result.notes[:ITEMS]]
    result.challenge = bounded(result.challenge)
    for check in result.checks:
        check.message = cut(check.message)
        check.details = bounded(check.details)
    for cell in result.cells:
        if cell.error is not None:
            cell.error = bounded(cell.error)


def bounded_reply(reply: Any, chars: int) -> Any:
    """A worker's reply with every string capped at ``chars``; its shape is kept (the
    checks read it), its total size is already bounded by Limits.reply_bytes."""
    return bounded(reply, chars=chars, items=1 << 62, depth=1 << 10)
