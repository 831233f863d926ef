"""Metric names used by PromQL expressions (parsed with promql-parser, not pattern-matched)."""

import promql_parser


def metric_names(expr: str) -> set[str]:
    """Every metric a PromQL expression selects; an expression that selects by a name pattern
    (``{__name__=~...}``) is refused, since its names cannot be checked."""
    names: set[str] = set()
    unnamed: list[str] = []

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:
                unnamed.append(str(node))

    promql_parser.walk(promql_parser.parse(expr), visit)
    assert not unnamed, f"selectors without a metric name in {expr!r}: {unnamed}"
    return names
