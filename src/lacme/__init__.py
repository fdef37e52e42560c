"""lacme: a small ACME (RFC 8555) client built around process isolation.

Each privilege-separated process has its own module (accountd, and later
master, client and webserver); the contracts between them live in small
shared modules such as accountd_protocol.
"""

__version__ = "0.1.0"
