"""TFRecord framing without TensorFlow, so Beam workers can frame each record as they stream it
into a shard.

Each record is ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``,
little-endian, as TensorFlow's ``TFRecordWriter`` writes it.
"""

import struct

import google_crc32c

_MASK_DELTA = 0xA282EAD8


def crc32c(data: bytes) -> int:
    return google_crc32c.value(data)


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return b"".join(
        (length, struct.pack("<I", masked_crc32c(length)), record, struct.pack("<I", masked_crc32c(record)))
    )


class TFRecordWriter:
    """Writes framed records to an open binary file object (which the caller closes)."""

    def __init__(self, fileobj):
        self._file = fileobj
        self.records = 0

    def write(self, record: bytes) -> None:
        self._file.write(frame(record))
        self.records += 1
