"""Metric names a PromQL expression reads, so dashboards and alerts can be checked against
what the worker and Triton really export (a misspelt metric draws an empty panel, or an
alert that can never fire, and nothing else says so).

A small scanner, not a parser: it skips strings, label matchers ``{...}``, ranges ``[...]``,
numbers and durations, function names (an identifier followed by ``(``), aggregation operators,
the label lists of ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``,
keywords, and Grafana variables (``$__rate_interval``, ``${datasource}``). Every other
identifier is a metric name.
"""

from __future__ import annotations

import re

_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"(0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+([eE][+-]?[0-9]+)?)[A-Za-z0-9]*")
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"})
# Aggregation operators may put their grouping first: `sum by (le) (...)`.
_AGGREGATIONS = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
})
_CLOSING = {"{": "}", "[": "]", "(": ")"}


def _skip_string(text: str, i: int) -> int:
    """Index just past the string literal that starts at text[i]."""
    quote = text[i]
    i += 1
    while i < len(text):
        if text[i] == "\\" and quote != "`":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    raise ValueError(f"unterminated string literal in PromQL: {text!r}")


def _skip_group(text: str, i: int) -> int:
    """Index just past the bracketed group that opens at text[i] (strings inside respected)."""
    opening, closing = text[i], _CLOSING[text[i]]
    depth = 0
    while i < len(text):
        char = text[i]
        if char in "\"'`":
            i = _skip_string(text, i)
            continue
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced {opening!r} in PromQL: {text!r}")


def metric_names(expr: str) -> set[str]:
    """Metric names read by one PromQL expression (Grafana variables allowed)."""
    text = _GRAFANA_VARIABLE.sub("1", expr)
    names: set[str] = set()
    depth = 0
    i = 0
    while i < len(text):
        char = text[i]
        if char in "()":
            depth += 1 if char == "(" else -1
            if depth < 0:
                raise ValueError(f"unbalanced ')' in PromQL: {expr!r}")
            i += 1
        elif char in "\"'`":
            i = _skip_string(text, i)
        elif char in "{[":
            i = _skip_group(text, i)
        elif char.isdigit() or (char == "." and i + 1 < len(text) and text[i + 1].isdigit()):
            match = _NUMBER.match(text, i)
            i = match.end() if match else i + 1
        elif (match := _IDENT.match(text, i)) is not None:
            word, i = match.group(), match.end()
            rest = text[i:].lstrip()
            follows_paren = rest.startswith("(")
            if word in _GROUPING and follows_paren:
                i = _skip_group(text, len(text) - len(rest))
            elif follows_paren or word in _KEYWORDS or word in _GROUPING or word in _AGGREGATIONS:
                continue
            else:
                names.add(word)
        else:
            i += 1
    if depth:
        raise ValueError(f"unbalanced '(' in PromQL: {expr!r}")
    return names


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<arg>.*?)\s*(,\s*\w+\s*)?\)\s*$", re.DOTALL)
_FUNCTION_QUERY = re.compile(r"^\s*(label_names|metrics)\(.*\)\s*$", re.DOTALL)


def grafana_variable_metric_names(query: str) -> set[str]:
    """Metric names of a Grafana Prometheus template-variable query: ``label_values(expr, label)``,
    ``query_result(expr)`` or a plain expression."""
    match = _LABEL_VALUES.match(query)
    if match:
        return metric_names(match.group("arg"))
    if _FUNCTION_QUERY.match(query):
        return set()
    inner = re.match(r"^\s*query_result\((?P<expr>.*)\)\s*$", query, re.DOTALL)
    return metric_names(inner.group("expr") if inner else query)
