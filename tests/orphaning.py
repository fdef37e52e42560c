"""A stand-in webserver `command` that leaves a process behind:

    python orphaning.py COMMAND...

leaves an orphan (support.orphans), then becomes COMMAND.
"""

import os
import sys

from support.orphans import leave_orphan

if __name__ == "__main__":
    leave_orphan()
    os.execv(sys.argv[1], sys.argv[1:])
