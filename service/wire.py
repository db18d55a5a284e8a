"""Protobuf wire format helpers: a reply is assembled from pre-serialized parts.

Concatenated serializations of one message type parse as their merge (repeated fields append,
scalars take the last value), so the parts of a reply that repeat across people (reason lines,
the parameters of a region and date) are serialized once and reused as bytes.
"""

from __future__ import annotations


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def embedded(field_number: int, payload: bytes) -> bytes:
    """A length-delimited field (a sub-message, bytes or string) as it appears on the wire."""
    return varint(field_number << 3 | 2) + varint(len(payload)) + payload


def boolean(field_number: int, value: bool) -> bytes:
    return varint(field_number << 3) + (b"\x01" if value else b"\x00")


def integer(field_number: int, value: int) -> bytes:
    return varint(field_number << 3) + varint(value) if value else b""
