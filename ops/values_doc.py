"""Every value of the chart's values.yaml has a comment right above it.

An operator reads values.yaml to configure a release; a value without a comment is a value
nobody can set with confidence. Keys inside a list item (the default tolerations, for
example) belong to that value and need no comment of their own.
"""

from __future__ import annotations

import re

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/\"']+):(\s|$)")
_ITEM = re.compile(r"^(?P<indent> *)- ")


def uncommented_values(text: str) -> list[str]:
    """Dotted paths of the keys of a values file with no comment line directly above them."""
    missing: list[str] = []
    path: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    item_indent: int | None = None  # inside a list item started at this indent
    previous = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            previous = ""
            continue
        indent = len(line) - len(line.lstrip(" "))
        if item_indent is not None and indent > item_indent:
            previous = stripped
            continue
        item_indent = None
        if (item := _ITEM.match(line)) is not None:
            item_indent = len(item.group("indent"))
            previous = stripped
            continue
        key = _KEY.match(line)
        if key is not None and not stripped.startswith("#"):
            while path and path[-1][0] >= indent:
                path.pop()
            name = key.group("key").strip("\"'")
            dotted = ".".join([p[1] for p in path] + [name])
            if not previous.startswith("#"):
                missing.append(dotted)
            path.append((indent, name))
        previous = stripped
    return missing
