"""OpenAPI schemas as msgspec writes the JSON: two corrections to what Litestar generates.

Numbers in responses may be `null`. JSON has no NaN or infinity, so msgspec writes such a
float as `null`; and the monitor reports NaN wherever a statistic is undefined (a p-value
when no test ran, every statistic of a feature with no samples yet). A number in a request
may not be null (it is refused there), so schemas that a request body uses, even if
responses use them too, stay as they are: what a request sets is finite.

A constrained variadic tuple (`Annotated[tuple[X, ...], Meta(min_length=1)]`, such as a
rollout's `steps`) comes out of Litestar 2 as items `oneOf: [X, {}]`, the `{}` standing for
the `...`; since `{}` matches anything, no item could match exactly one branch. The `{}`
is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from litestar.openapi.spec import OpenAPI, OpenAPIType, Reference, Schema

_METHODS = ("get", "put", "post", "delete", "patch")
_PREFIX = "#/components/schemas/"
# Where subschemas sit: the attribute of Litestar's `Schema`, and the key of a plain dict
# (the infer routes are documented with plain dicts: `gateway.infer_docs`).
_ALTERNATIVES = (("any_of", "anyOf"), ("one_of", "oneOf"))
_NESTED = (("all_of", "allOf"),)
_SINGLES = (("items", "items"), ("additional_properties", "additionalProperties"))


def document_schemas(openapi: OpenAPI) -> None:
    """Correct an app's component schemas (after `document_infer`, which adds some)."""
    schemas: dict[str, Any] = dict(openapi.components.schemas or {})
    for schema in schemas.values():
        _drop_ellipsis(schema)
    requested: set[str] = set()
    for operation in _operations(openapi):
        for media in (_field(operation.request_body, "content") or {}).values():
            _collect_refs(_field(media, "schema"), schemas, requested)
    for name, schema in schemas.items():
        if name not in requested:
            _allow_null(schema)
    for operation in _operations(openapi):  # inline response schemas, such as a list of reports
        for response in (operation.responses or {}).values():
            for media in (_field(response, "content") or {}).values():
                _allow_null(_field(media, "schema"))


def _operations(openapi: OpenAPI) -> Iterator[Any]:
    for item in (openapi.paths or {}).values():
        for method in _METHODS:
            if (operation := getattr(item, method)) is not None:
                yield operation


def _field(node: Any, attribute: str, key: str | None = None) -> Any:
    """`attribute` of a Litestar spec object, or `key` (the same by default) of a plain dict
    standing for one."""
    return node.get(key or attribute) if isinstance(node, dict) else getattr(node, attribute, None)


def _ref(node: Any) -> str | None:
    ref = _field(node, "ref", "$ref") if isinstance(node, Reference | dict) else None
    return ref.removeprefix(_PREFIX) if isinstance(ref, str) else None


def _alternatives(node: Any) -> list[Any]:
    return [branch for names in _ALTERNATIVES for branch in _field(node, *names) or ()]


def _children(node: Any) -> Iterator[Any]:
    """The subschemas written inside `node` (references are not followed)."""
    if not isinstance(node, Schema | dict):
        return
    yield from _alternatives(node)
    for names in _NESTED:
        yield from _field(node, *names) or ()
    for names in _SINGLES:
        yield _field(node, *names)
    yield from (_field(node, "properties", "properties") or {}).values()


def _collect_refs(node: Any, schemas: dict[str, Any], found: set[str]) -> None:
    """Add to `found` every component schema that `node` uses, however deep."""
    if (name := _ref(node)) is not None:
        if name not in found and name in schemas:
            found.add(name)
            _collect_refs(schemas[name], schemas, found)
        return
    for child in _children(node):
        _collect_refs(child, schemas, found)


def _drop_ellipsis(node: Any) -> None:
    """Drop the empty branches that stand for the `...` of variadic tuples."""
    if isinstance(node, Schema) and node.one_of:
        node.one_of = [branch for branch in node.one_of if branch != Schema()]
    for child in _children(node):
        _drop_ellipsis(child)


def _allow_null(node: Any) -> None:
    """Make every number written inside `node` a number or null."""
    if _field(node, "type") == OpenAPIType.NUMBER:  # also equal to the plain "number"
        if isinstance(node, Schema):
            node.type = [OpenAPIType.NUMBER, OpenAPIType.NULL]
        else:
            node["type"] = ["number", "null"]
    # `float | None` is already `oneOf: [number, null]`: a nullable number branch there
    # would match null twice, which `oneOf` refuses.
    optional = any(_field(branch, "type") == OpenAPIType.NULL for branch in _alternatives(node))
    for child in _children(node):
        if not (optional and _field(child, "type") == OpenAPIType.NUMBER):
            _allow_null(child)
