"""Extraction of the final answer from ``\\boxed{...}``, robust to anything a model writes."""

from __future__ import annotations

BOX_COMMANDS = ("\\boxed", "\\fbox")


def last_boxed(text: str, max_chars: int = 10_000) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces, or None.

    Runs in time linear in the text; contents longer than ``max_chars`` count as no answer.
    """
    start = max(text.rfind(command) for command in BOX_COMMANDS)
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0 or text[start:brace].strip() not in BOX_COMMANDS:
        return None
    depth = 0
    end = min(len(text), brace + max_chars + 2)
    for position in range(brace, end):
        char = text[position]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : position]
    return None
