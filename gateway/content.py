"""Request body handling before protocol decoding: compression, size bounds, and the ways
a JSON body's bytes can be wrong before any field is looked at."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from typing import Any

from litestar import Request
from litestar.exceptions import SerializationException

from gateway.errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError

# 32 + MAX_WBITS accepts both gzip and zlib framing; deflate may also arrive raw.
_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS
_RAW_DEFLATE = -zlib.MAX_WBITS


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body with its Content-Encoding (gzip, deflate) removed, at most `limit` bytes.

    The limit applies to the decompressed size, so a small compressed bomb is refused
    without inflating it.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding == "gzip":
        return _inflate(body, _GZIP_OR_ZLIB, limit, encoding)
    if encoding == "deflate":
        try:
            return _inflate(body, _GZIP_OR_ZLIB, limit, encoding)
        except BadRequestError:
            return _inflate(body, _RAW_DEFLATE, limit, encoding)
    raise UnsupportedMediaTypeError(
        f"Content-Encoding {content_encoding!r} is not supported; use gzip, deflate or none"
    )


def _inflate(body: bytes, wbits: int, limit: int, encoding: str) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequestError(f"the body is not valid {encoding} data: {exc}") from exc
    if len(data) > limit:
        raise PayloadTooLargeError(f"the decompressed body is over the limit of {limit} bytes")
    if not inflater.eof:
        raise BadRequestError(f"the {encoding} body is truncated")
    return data


# More digits than any body can have bytes; also keeps int() far from its 4,300-digit limit.
_MAX_COUNT_DIGITS = 18


def parse_byte_count(value: str, header: str) -> int:
    """A header that holds a byte count, as an int; anything but ASCII digits is a 400."""
    text = value.strip()
    # str.isdigit() also accepts "²" or "٣", which int() then refuses or reads as a number.
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_COUNT_DIGITS:
        shown = value if len(value) <= 40 else f"{value[:40]}... ({len(value)} characters)"
        raise BadRequestError(f"{header} must be a byte count in ASCII digits, got {shown!r}")
    return int(text)


def parse_header_length(value: str | None) -> int | None:
    """The `Inference-Header-Content-Length` header as an int (None when absent)."""
    return None if value is None else parse_byte_count(value, "Inference-Header-Content-Length")


@contextlib.contextmanager
def json_errors(what: str) -> Iterator[None]:
    """Answer 400 for the JSON decoder's complaints about the bytes themselves, which it
    raises as Python errors rather than as decode errors."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"{what} is not valid UTF-8 ({exc.reason}); send UTF-8 JSON") from exc
    except RecursionError:
        # The decoder recurses once per level of nesting, so a body nested about a thousand
        # levels deep exhausts the interpreter's stack; no request of this API nests more
        # than a few levels. The traceback is of no use to anyone, hence `from None`.
        raise BadRequestError(
            f"{what} nests JSON arrays or objects too deeply; no request needs more than a "
            "few levels"
        ) from None


class JSONRequest(Request[Any, Any, Any]):
    """Litestar's request, with every malformed JSON body answered 400 with what to fix."""

    async def json(self) -> Any:
        """The decoded JSON body (see `json_errors`)."""
        try:
            with json_errors("the request body"):
                return await super().json()
        except SerializationException as exc:
            raise BadRequestError(f"malformed JSON in the request body: {exc}") from exc
