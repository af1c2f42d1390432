"""A test record as ``--trtctx-report`` writes it, recognised in the text without parsing it.

The plugin writes reports with ``json.dumps(indent=1, sort_keys=True)`` (``storage.json_bytes``),
so a test record in the ``tests`` list has one form: its keys in order, one per line, three
spaces deep. :data:`RECORD` matches exactly that form, value by value, with JSON's own grammar
for each value written as the encoder writes it (strings escaped as ``ensure_ascii`` escapes them,
floats as ``repr`` writes those of up to 15 significant digits, integers as ``repr``). A record
it matches is therefore valid JSON, holds the types ``report.load`` requires, and is already the
text a writer would produce for it: ``pytest-trtctx merge`` copies it as it is, and ``diff``
compares its fields as text. Only the objects of free form (``known_failure``, ``spec``,
``trace``) are matched as indented blocks: :func:`block` parses and checks each one.

Anything else (another key order or spacing, a field the plugin does not write, a number ``repr``
would write otherwise) does not match, and is parsed with :mod:`json` instead
(``report_stream``): the text decides only how fast a record is read, never what it says.
Standard library only.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

#: ``\\u`` escapes as ``ensure_ascii`` writes them: lowercase, and only for a character it does not
#: write as itself or with a short escape (below space but \\b \\t \\n \\f \\r, DEL, non-ASCII).
_U = r"(?:000[0-7bef]|001[0-9a-f]|007f|00[89a-f][0-9a-f]|0[1-9a-f][0-9a-f]{2}|[1-9a-f][0-9a-f]{3})"
#: Printable ASCII but the quote and the backslash: written as themselves.
_PLAIN = r"[\x20\x21\x23-\x5b\x5d-\x7e]*"
#: A JSON string's content as the encoder writes it.
CONTENT = _PLAIN + r"(?:(?:\\[\\\"bfnrt]|\\u" + _U + ")" + _PLAIN + ")*"
STR = '"' + CONTENT + '"'
#: An integer as ``repr`` writes it (``reruns``).
INT = r"(?:0|[1-9][0-9]{0,8})"
#: A duration as the plugin writes it (``round(seconds, 6)``, then ``repr``): fixed notation from
#: 1e-4 up to 1e9, scientific below (``9.4e-05``), never a trailing zero but in ``0.0``. With 15
#: significant digits or fewer a decimal is the shortest that reads back as its float, so
#: ``repr`` writes exactly these digits. Any other number (negative, longer, ``1e+20``) is valid
#: JSON the pattern leaves to :mod:`json`.
NUMBER = (
    r"(?:(?:0\.(?!0000)|[1-9][0-9]{0,8}\.)(?:0|[0-9]{0,5}[1-9])"
    r"|[1-9](?:\.[0-9]{0,4}[1-9])?e-0[5-9])"
)
_STR_OR_NULL = f"(?:null|{STR})"
_BOOL_OR_NULL = r"(?:null|true|false)"
#: An object of free form, three spaces deep: every line inside is at least four deep, so the
#: first line of three spaces and a brace ends it. Its content is checked by :func:`block`.
_BLOCK = r"\{\n    [^\n]*(?:\n    [^\n]*)*\n   \}"
#: The phases a record times, in key order.
_DURATIONS = (
    r"\{\}|\{\n    (?:"
    rf'"call": {NUMBER}(?:,\n    "setup": {NUMBER})?(?:,\n    "teardown": {NUMBER})?'
    rf'|"setup": {NUMBER}(?:,\n    "teardown": {NUMBER})?|"teardown": {NUMBER})\n   \}}'
)
_STRINGS = rf"\[\]|\[\n    {STR}(?:,\n    {STR})*\n   \]"
#: Output names to hashes: none, one, or several (group ``several``: in key order only if
#: :func:`names_in_order` says so).
_HASHES = (
    rf"\{{\}}|\{{\n    {STR}: {STR}\n   \}}"
    rf"|(?P<several>\{{\n    {STR}: {STR}(?:,\n    {STR}: {STR})+\n   \}})"
)

#: One test record, from its ``{`` to its ``}`` two spaces deep (group 1: all but the ``{``),
#: then what follows it in the ``tests`` list: the comma before the next record (consumed) or
#: the list's end (not consumed).
RECORD = re.compile(
    r'\{(\n   "backend": (?P<backend>' + _STR_OR_NULL + "),\n"
    r'   "durations": (?:' + _DURATIONS + "),\n"
    r'   "fresh": ' + _BOOL_OR_NULL + ",\n"
    r'   "known_failure": (?P<known_failure>null|' + _BLOCK + "),\n"
    r'   "messages": (?P<messages>' + _STRINGS + "),\n"
    r'   "nodeid": "(?P<nodeid>' + CONTENT + ')",\n'
    r'   "order": ' + _STR_OR_NULL + ",\n"
    r'   "order_applied": (?P<order_applied>' + _BOOL_OR_NULL + "),\n"
    r'   "outcome": (?P<outcome>' + _STR_OR_NULL + "),\n"
    r'   "outputs_sha256": (?P<outputs_sha256>' + _HASHES + "),\n"
    r'   "reruns": ' + INT + ",\n"
    r'   "signature": (?P<signature>' + _STR_OR_NULL + "),\n"
    r'   "spec": (?P<spec>null|' + _BLOCK + ")"
    r'(?:,\n   "trace": (?P<trace>null|' + _BLOCK + "))?"
    r"\n  \})(?:,\n  (?=\{)|(?=\n \]))"
)
#: The free-form fields of a record: blocks that :func:`block` must accept.
BLOCKS = ("known_failure", "spec", "trace")
#: One name and hash of an ``outputs_sha256`` block.
_HASH = re.compile(rf"\n    ({STR}): ({STR})")
_NUMBER_TOKEN = re.compile(rf"(?:{NUMBER})\Z")


def value(text: str) -> Any:
    """The value of a JSON text the pattern matched (a string, null, a block)."""
    return json.loads(text)


def content(text: str) -> str:
    """The string whose JSON content (between the quotes) is ``text``."""
    return text if "\\" not in text else str(json.loads(f'"{text}"'))


def names_in_order(hashes: str) -> bool:
    """Whether the names of a matched ``outputs_sha256`` block are in key order, each once, as
    a writer with ``sort_keys`` leaves them."""
    names = [content(name[1:-1]) for name, _hash in _HASH.findall(hashes)]
    return all(a < b for a, b in itertools.pairwise(names))


def hashes(text: str) -> dict[str, str]:
    """The output names and hashes of a matched ``outputs_sha256`` block."""
    return {content(n[1:-1]): content(h[1:-1]) for n, h in _HASH.findall(text)}


class Unstreamable(Exception):
    """A report for ``report.load`` to read: it has a problem ``load`` names exactly, or a form
    the streaming reader (``report_stream``) leaves to it."""


#: Blocks met before, by their text: known failures and specs repeat across a report.
_BLOCK_CACHE: dict[str, bool] = {}
_BLOCK_CACHE_MAX = 4096


def block(text: str) -> bool:
    """Whether a matched free-form block is an object that a writer writes as this very text
    (valid JSON, each key once, in order, every value as the encoder writes it)."""
    known = _BLOCK_CACHE.get(text)
    if known is not None:
        return known
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        ok = False
    else:
        ok = isinstance(parsed, dict) and nested(parsed, 3) == text
    if len(_BLOCK_CACHE) < _BLOCK_CACHE_MAX:
        _BLOCK_CACHE[text] = ok
    return ok


def nested(data: Any, depth: int) -> str:
    """``data`` as a writer writes it ``depth`` levels deep in a report (the first line not
    indented, every later one ``depth`` spaces more)."""
    text = json.dumps(data, indent=1, sort_keys=True, default=str)
    return text.replace("\n", "\n" + " " * depth)


def record_text(record: dict[str, Any]) -> str:
    """A test record as a writer writes it in a report's ``tests`` list."""
    return nested(record, 2)


def is_number(token: str) -> bool:
    """Whether ``token`` is a number as the encoder writes it (what :data:`RECORD` accepts)."""
    return _NUMBER_TOKEN.match(token) is not None
