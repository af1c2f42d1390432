"""The report pipe's framing: how a worker's messages are written, and read back among bytes that
others wrote to the same pipe.

A worker's report pipe is inherited by everything its tests start, and a C library may write to
any descriptor it inherited. So the channel never trusts a byte to be the worker's: each message
is one frame, ``MARKER <length> <json>\\n`` (JSON as Python writes it holds no raw newline), and a
line that is not a whole frame is foreign: counted and kept as a sample for the warning that names
the test, never parsed as a message. Reading is linear in the bytes read, however large a message
(a test's captured output can be hundreds of megabytes) and however it is split into chunks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

#: Starts every frame. A NUL byte and a name: text a library prints does not start this way.
MARKER = b"\x00trtctx-frame "
#: How many foreign bytes are kept to show in the warning (the rest are only counted).
SAMPLE = 200


def encode(message: dict[str, Any]) -> bytes:
    """One frame for ``message``. A value JSON cannot hold (a tuple key, a cycle, an integer too
    long to print) is sent as its ``repr``, so that what a test recorded never stops its report."""
    try:
        # default=str: a property a test recorded (a Path, a numpy integer) is sent as text,
        # which is what pytest's JUnit XML makes of it too.
        payload = json.dumps(message, default=str)
    except (TypeError, ValueError, RecursionError):
        payload = json.dumps(plain(message), default=str)
    data = payload.encode()
    return MARKER + str(len(data)).encode() + b" " + data + b"\n"


def plain(value: Any, seen: frozenset[int] = frozenset()) -> Any:
    """``value`` as data JSON can hold: containers walked, anything else that does not encode
    replaced by its ``repr`` (a cycle by a note that it is one)."""
    if id(value) in seen:
        return f"<cycle: {type(value).__name__} contains itself>"
    if isinstance(value, dict):
        inner = seen | {id(value)}
        return {
            k if isinstance(k, str) else safe_repr(k): plain(v, inner) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        inner = seen | {id(value)}
        return [plain(v, inner) for v in value]
    try:
        json.dumps(value, default=str)
    except (TypeError, ValueError, RecursionError):
        return safe_repr(value)
    return value


def safe_repr(value: Any) -> str:
    """``repr(value)``, or a note saying why it has none (an integer past Python's digit limit
    raises even from ``repr``)."""
    try:
        return repr(value)
    except Exception as exc:  # any failing __repr__: say what it was and why it cannot be shown
        return f"<{type(value).__name__} that cannot be shown: {exc}>"


class Reader:
    """Turns the bytes of one pipe, in chunks of any size, into messages and foreign bytes."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._in_frame = False
        self.foreign = 0  # foreign bytes seen and not yet taken
        self.sample = b""

    @property
    def in_frame(self) -> bool:
        """Part of a frame has arrived and the rest is still coming: the worker is sending."""
        return self._in_frame

    def feed(self, chunk: bytes) -> Iterator[dict[str, Any]]:
        """The messages completed by ``chunk``; foreign lines go to :attr:`foreign` as the
        messages around them are taken, so that they are counted where they came."""
        start = len(self._buffer)
        self._buffer += chunk
        if not self._in_frame:
            self._in_frame = self._buffer.find(MARKER, max(0, start - len(MARKER) + 1)) >= 0
        end = self._buffer.rfind(b"\n", start)
        if end < 0:
            return
        block = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        self._in_frame = MARKER in self._buffer
        for line in block.split(b"\n"):
            message = self._frame(line)
            if message is not None:
                yield message

    def finish(self) -> None:
        """The pipe is closed: what is left is foreign (a frame never ends without a newline)."""
        if self._buffer:
            self._alien(bytes(self._buffer))
            self._buffer.clear()
        self._in_frame = False

    def take_foreign(self) -> tuple[int, bytes]:
        """How many foreign bytes came since the last call, and the first of them."""
        taken = (self.foreign, self.sample)
        self.foreign, self.sample = 0, b""
        return taken

    def _frame(self, line: bytes) -> dict[str, Any] | None:
        at = line.find(MARKER)
        if at < 0:
            self._alien(line + b"\n")
            return None
        if at:
            self._alien(line[:at])
        size, _, payload = line[at + len(MARKER) :].partition(b" ")
        try:
            if not size.isdigit() or int(size) != len(payload):
                raise ValueError("length does not match")
            message = json.loads(payload)
            if not isinstance(message, dict):
                raise ValueError("not a message")
        except ValueError:  # a frame broken by bytes written into it: not ours to trust
            self._alien(line[at:] + b"\n")
            return None
        return message

    def _alien(self, data: bytes) -> None:
        self.foreign += len(data)
        if len(self.sample) < SAMPLE:
            self.sample += data[: SAMPLE - len(self.sample)]
