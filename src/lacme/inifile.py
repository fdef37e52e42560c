"""The INI dialect of lacme 0.8.2's configuration files (Perl's Config::Tiny).

Keys before any section header belong to the default section, named by
DEFAULT_SECTION; lines starting with `#` or `;` are comments, as is
` ; ...` at the end of a line; there is no interpolation and no line
continuation; a repeated key or section is merged, the later value winning.
"""

import re

DEFAULT_SECTION = "_"

_COMMENT_OR_BLANK = re.compile(r"\s*(?:[#;]|$)")
_INLINE_COMMENT = re.compile(r"\s;\s.+$")
_SECTION = re.compile(r"\s*\[\s*(.+?)\s*\]\s*$")
_PROPERTY = re.compile(r"\s*([^=]+?)\s*=\s*(.*?)\s*$")
_LINE_BREAK = re.compile(r"\r{1,2}\n|\r|\n")

Sections = dict[str, dict[str, str]]


class IniError(ValueError):
    """The file is not in the INI dialect; the message names file and line."""


def parse(text: str, filename: str) -> Sections:
    sections: Sections = {}
    current = DEFAULT_SECTION
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        if _COMMENT_OR_BLANK.match(line):
            continue
        line = _INLINE_COMMENT.sub("", line)
        if header := _SECTION.fullmatch(line):
            current = header.group(1)
            sections.setdefault(current, {})
        elif prop := _PROPERTY.fullmatch(line):
            sections.setdefault(current, {})[prop.group(1)] = prop.group(2)
        else:
            raise IniError(f"{filename}:{number}: syntax error: {line!r}")
    return sections


def read(path: str) -> Sections:
    """Parse the file at PATH; OSError propagates for the caller to word."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return parse(f.read(), path)
