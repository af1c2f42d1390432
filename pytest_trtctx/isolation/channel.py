"""The report pipe's framing: how a worker's messages are written, and read back among bytes that
others wrote to the same pipe.

A worker's report pipe is inherited by everything its tests start, and a C library may write to
any descriptor it inherited. So the channel never trusts a byte to be the worker's: each message
is one frame, ``MARKER <length>[,<size>...] <json>\n`` (JSON as Python writes it holds no raw
newline) followed by the frame's attachments, and a line that is not a whole frame is foreign:
counted and kept as a sample for the warning that names the test, never parsed as a message.

A large section of captured output is sent as an attachment (its UTF-8 bytes, the sizes in the
header) rather than inside the JSON: encoding and decoding hundreds of megabytes as JSON strings
costs more than the test that printed them. Reading is linear in the bytes read, however large a
message and however it is split into chunks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

#: Starts every frame. A NUL byte and a name: text a library prints does not start this way.
MARKER = b"\x00trtctx-frame "
#: How many foreign bytes are kept to show in the warning (the rest are only counted).
SAMPLE = 200
#: A section of captured output at least this long (characters) travels as an attachment.
ATTACH_FROM = 1 << 16
#: Lone surrogates (output decoded with surrogateescape) cross as they are.
_UTF8 = ("utf-8", "surrogatepass")


def frame(message: dict[str, Any]) -> list[bytes]:
    """The bytes of one frame for ``message``: its header line, then its attachments. A value
    JSON cannot hold (a tuple key, a cycle, an integer too long to print) is sent as its
    ``repr``, so that what a test recorded never stops its report."""
    message, attachments = _detach(message)
    try:
        # default=str: a property a test recorded (a Path, a numpy integer) is sent as text,
        # which is what pytest's JUnit XML makes of it too.
        payload = json.dumps(message, default=str)
    except (TypeError, ValueError, RecursionError):
        payload = json.dumps(plain(message), default=str)
    data = payload.encode()
    sizes = "".join(f",{len(a)}" for a in attachments)
    return [MARKER + f"{len(data)}{sizes} ".encode() + data + b"\n", *attachments]


def encode(message: dict[str, Any]) -> bytes:
    """One frame for ``message``, as one string of bytes."""
    return b"".join(frame(message))


def _detach(message: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    """``message`` with each large section of a report's captured output replaced by
    ``{"attached": n}``, and the attachments."""
    data: Any = message.get("data")
    sections = data.get("sections") if isinstance(data, dict) else None
    if not isinstance(sections, list):
        return message, []
    attachments: list[bytes] = []
    out: list[Any] = []
    for section in sections:
        if isinstance(section, (list, tuple)) and len(section) == 2:
            title, content = section
            if isinstance(content, str) and len(content) >= ATTACH_FROM:
                section = [title, {"attached": len(attachments)}]
                attachments.append(content.encode(*_UTF8))
        out.append(section)
    if not attachments:
        return message, []
    return {**message, "data": {**data, "sections": out}}, attachments


def _attach(message: dict[str, Any], attachments: list[bytes]) -> None:
    """Put the attachments back where :func:`_detach` took them from."""
    for section in message["data"]["sections"]:
        if isinstance(section, list) and len(section) == 2 and isinstance(section[1], dict):
            section[1] = attachments[int(section[1]["attached"])].decode(*_UTF8)


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
        self._scanned = 0  # the buffer up to here holds no newline of an unfinished line
        self._marked = False  # the unfinished line holds a marker: a frame is arriving
        self._waiting: tuple[dict[str, Any], list[int]] | None = None  # for its attachments
        self.foreign = 0  # foreign bytes seen and not yet taken
        self.sample = b""

    @property
    def in_frame(self) -> bool:
        """Part of a frame has arrived and the rest is still coming: the worker is sending."""
        return self._marked or self._waiting is not None

    def feed(self, chunk: bytes) -> Iterator[dict[str, Any]]:
        """The messages completed by ``chunk``; foreign lines go to :attr:`foreign` as the
        messages around them are taken, so that they are counted where they came."""
        buffer = self._buffer
        buffer += chunk
        at = 0
        try:
            while True:
                if self._waiting is not None:
                    message, sizes = self._waiting
                    if len(buffer) - at < sum(sizes):
                        return
                    parts = []
                    for size in sizes:
                        parts.append(bytes(buffer[at : at + size]))
                        at += size
                    self._waiting = None
                    self._scanned = at
                    _attach(message, parts)
                    yield message
                    continue
                start = max(at, self._scanned)
                newline = buffer.find(b"\n", start)
                if not self._marked:
                    self._marked = buffer.find(MARKER, max(at, start - len(MARKER) + 1)) >= 0
                if newline < 0:
                    self._scanned = len(buffer)
                    return
                self._marked = False
                line_start, at = at, newline + 1
                self._scanned = at
                found = self._frame(buffer, line_start, newline)
                if found is None:
                    continue
                message, sizes = found
                if sizes:
                    self._waiting = (message, sizes)
                else:
                    yield message
        finally:  # also when the reader stops early (the run was stopped): what was read goes
            del buffer[:at]
            self._scanned -= at

    def finish(self) -> None:
        """The pipe is closed: what is left is foreign (a frame never ends without a newline)."""
        if self._buffer:
            self._alien(bytes(self._buffer))
            self._buffer.clear()
        self._scanned, self._marked, self._waiting = 0, False, None

    def take_foreign(self) -> tuple[int, bytes]:
        """How many foreign bytes came since the last call, and the first of them."""
        taken = (self.foreign, self.sample)
        self.foreign, self.sample = 0, b""
        return taken

    def _frame(
        self, buffer: bytearray, start: int, end: int
    ) -> tuple[dict[str, Any], list[int]] | None:
        """The message framed in ``buffer[start:end]`` (one line) and the sizes of its
        attachments, or None: the line is foreign, or a frame that bytes written into it broke
        (not ours to trust)."""
        at = buffer.find(MARKER, start, end)
        if at < 0:
            self._alien(buffer[start : end + 1])
            return None
        if at > start:
            self._alien(buffer[start:at])
        head = at + len(MARKER)
        space = buffer.find(b" ", head, end)
        try:
            if space < 0:
                raise ValueError("no header")
            size, *sizes = (int(n) for n in bytes(buffer[head:space]).split(b","))
            if size != end - space - 1 or min(sizes, default=0) < 0:
                raise ValueError("length does not match")
            message = json.loads(buffer[space + 1 : end])
            if not isinstance(message, dict):
                raise ValueError("not a message")
        except ValueError:
            self._alien(buffer[at : end + 1])
            return None
        return message, sizes

    def _alien(self, data: bytes | bytearray) -> None:
        self.foreign += len(data)
        if len(self.sample) < SAMPLE:
            self.sample += bytes(data[: SAMPLE - len(self.sample)])


class Sections:
    """A test's captured output sent once, not once per report.

    Each of a test's reports carries every section captured so far (pytest builds them from one
    list), so its teardown report repeats the call's output: hundreds of megabytes twice for a
    test that prints that much. The worker replaces a section already sent for the same test
    with ``{"same_as": n}`` (the n-th section sent for it); the parent puts it back. Both sides
    number the sections in the order they were sent, one instance per test on each side.
    """

    def __init__(self) -> None:
        self._sent: dict[Any, list[Any]] = {}

    def compact(self, test: Any, data: dict[str, Any]) -> dict[str, Any]:
        """Worker side: ``data`` (a serialized report of ``test``) with repeats as references."""
        sent = self._sent.setdefault(test, [])
        out = []
        for section in data.get("sections") or []:
            same = next(
                (n for n, old in enumerate(sent) if old[1] is section[1] and old[0] == section[0]),
                None,
            )
            if same is None:
                sent.append(section)
                out.append(section)
            else:
                out.append({"same_as": same})
        return {**data, "sections": out} if "sections" in data else data

    def expand(self, test: Any, data: dict[str, Any]) -> dict[str, Any]:
        """Parent side: ``data`` with each reference replaced by the section it names."""
        sent = self._sent.setdefault(test, [])
        out = []
        for section in data.get("sections") or []:
            if isinstance(section, dict):
                section = sent[int(section["same_as"])]
            else:
                sent.append(section)
            out.append(section)
        return {**data, "sections": out} if "sections" in data else data

    def forget(self, test: Any) -> None:
        self._sent.pop(test, None)
