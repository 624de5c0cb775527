"""Request body handling before protocol decoding: compression and size bounds."""

from __future__ import annotations

import zlib

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


def parse_header_length(value: str | None) -> int | None:
    """The `Inference-Header-Content-Length` header as an int (None when absent)."""
    if value is None:
        return None
    if not value.strip().isdigit():
        raise BadRequestError(
            f"Inference-Header-Content-Length must be a byte count, got {value!r}"
        )
    return int(value)
