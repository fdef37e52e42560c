"""Stand-in `command` for lacme's client or webserver, for the privilege tests.

    python inspect_child.py REPORT_DIR KIND SECRET ARGS...

Records what the process was given by the master (ids, groups, the
environment it was executed with, open file descriptors, NoNewPrivs, umask,
working directory, whether it can open SECRET, and for the client the
`order-fd` of its settings) as REPORT_DIR/KIND-PID.json, then becomes the
real `python -I -m lacme.KIND ARGS...`.
"""

import json
import os
import sys

from support.proc import environment, open_fds, status_fields


def main() -> None:
    report_dir, kind, secret, *args = sys.argv[1:]
    fds = sorted(open_fds())
    environ = environment()
    try:
        with open(secret, "rb"):
            readable = True
    except PermissionError:
        readable = False
    status = status_fields()
    report = {
        "args": args,
        "resuid": os.getresuid(),
        "resgid": os.getresgid(),
        "groups": os.getgroups(),
        "environ": environ,
        "fds": fds,
        "no_new_privs": status["NoNewPrivs"],
        "umask": status["Umask"],
        "cwd": os.getcwd(),
        "secret_readable": readable,
        "sid_is_pid": os.getsid(0) == os.getpid(),
    }
    if kind == "client":
        # Read where it is, leaving the offset for the client to read from.
        settings = json.loads(os.pread(int(args[1]), 1 << 16, 0))
        report["order_fd"] = settings.get("order-fd")
    path = os.path.join(report_dir, f"{kind}-{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump(report, f)
    os.execv(sys.executable, [sys.executable, "-I", "-m", f"lacme.{kind}", *args])


if __name__ == "__main__":
    main()
