"""The INI dialect of lacme 0.8.2's configuration files (Perl's Config::Tiny).

Keys before any section header belong to the default section, named by
DEFAULT_SECTION; lines starting with `#` or `;` are comments, as is
` ; ...` at the end of a line; there is no interpolation and no line
continuation; a repeated key or section is merged, the later value winning
(`read_located` says where each section header stands, for a caller that
refuses a section defined twice).
"""

import re
from typing import NamedTuple

DEFAULT_SECTION = "_"

_COMMENT_OR_BLANK = re.compile(r"\s*(?:[#;]|$)")
_INLINE_COMMENT = re.compile(r"\s;\s.+$")
_SECTION = re.compile(r"\s*\[\s*(.+?)\s*\]\s*$")
_PROPERTY = re.compile(r"\s*([^=]+?)\s*=\s*(.*?)\s*$")
_LINE_BREAK = re.compile(r"\r{1,2}\n|\r|\n")

Sections = dict[str, dict[str, str]]


class IniError(ValueError):
    """The file is not in the INI dialect; the message names file and line."""


class Located(NamedTuple):
    sections: Sections
    # The line numbers of each section's headers, in order: two or more
    # for a section defined twice.  The default section has none.
    headers: dict[str, list[int]]


def parse_located(text: str, filename: str) -> Located:
    sections: Sections = {}
    headers: dict[str, list[int]] = {}
    current = DEFAULT_SECTION
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        if _COMMENT_OR_BLANK.match(line):
            continue
        line = _INLINE_COMMENT.sub("", line)
        if header := _SECTION.fullmatch(line):
            current = header.group(1)
            sections.setdefault(current, {})
            headers.setdefault(current, []).append(number)
        elif prop := _PROPERTY.fullmatch(line):
            sections.setdefault(current, {})[prop.group(1)] = prop.group(2)
        else:
            raise IniError(f"{filename}:{number}: syntax error: {line!r}")
    return Located(sections, headers)


def parse(text: str, filename: str) -> Sections:
    return parse_located(text, filename).sections


def read_located(path: str) -> Located:
    """Parse the file at PATH; OSError propagates for the caller to word."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return parse_located(f.read(), path)


def read(path: str) -> Sections:
    return read_located(path).sections
