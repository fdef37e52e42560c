"""The check both ends of lacme-accountd's UNIX socket make on the directory
it is in: lacme-accountd before creating its socket there, the master
before connecting to one.  Whoever may write to that directory may put a
socket of their own in its place, and be asked for signatures or answer
them.

Touches nothing, reads one directory's mode.  lacme-accountd imports it:
`os` only.
"""

import os

GROUP_OR_OTHERS_WRITE = 0o022


class InsecureDirectory(Exception):
    """DIRECTORY, whose permission bits are MODE, is writable by group or others."""

    def __init__(self, directory: str, mode: int) -> None:
        super().__init__(directory, mode)
        self.directory = directory
        self.mode = mode


def check_socket_directory(path: str) -> str:
    """The directory of the UNIX socket PATH, checked.

    Raises InsecureDirectory when group or others may write to it, and
    OSError (its `filename` the directory) when it can't be looked at;
    each caller words the refusal its own way.
    """
    directory = os.path.dirname(path) or "."
    mode = os.stat(directory).st_mode
    if mode & GROUP_OR_OTHERS_WRITE:
        raise InsecureDirectory(directory, mode & 0o7777)
    return directory
