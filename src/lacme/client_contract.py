"""The contract between the master and the ACME client process, as lacme
0.8.2's, so that either side can be the Perl one:

    CLIENT_COMMAND... COMMAND CONFIG_FD SOCKET_FD [ARGUMENT ...]

- the working directory is the challenge directory for newOrder (the client
  writes each key authorization there, named after its token), `/` otherwise;
- CONFIG_FD is a readable descriptor holding the [client] settings as one
  JSON object;
- SOCKET_FD is a stream connected to lacme-accountd (accountd_protocol);
- stdin: the CSR (DER) for newOrder, the certificate (DER) for revokeCert;
- stdout: the account object (JSON) for account, the chain (PEM) for newOrder;
- environment: DEBUG=1 turns on a trace on stderr.

`account` takes FLAGS, the sum of the ACCOUNT_* bits below, then contacts;
`newOrder` takes the identifiers (an IP address is an `ip` identifier,
anything else a `dns` one).

Beyond 0.8.2, all optional, so that a lacme 0.8.2 master works unchanged:

- `revokeCert [REASON]`: REASON, an RFC 5280 reason code (REVOCATION_REASONS);
- `keyChange NEW_SOCKET_FD`: move the account to the key of a second
  lacme-accountd connected on NEW_SOCKET_FD (stdout: the account object);
- CONFIG_FD may hold `preferred-chain` for newOrder: the issuer common name
  of the chain to return among those the server offers;
- CONFIG_FD may hold `profile` for newOrder, a name from the directory's
  meta.profiles, and `replaces`, the ARI certID (RFC 9773) of the
  certificate the order renews;
- `directory`: the server's directory object (JSON) on stdout;
- `renewalInfo CERTID`: the certificate's renewal information (RFC 9773) on
  stdout, as {"renewalInfo": OBJECT, "retryAfter": SECONDS or null}.
  These two sign nothing: SOCKET_FD is then not read, and the master
  passes a stream with no accountd behind it (UNSIGNED).
"""

ACCOUNT = "account"
NEW_ORDER = "newOrder"
REVOKE_CERT = "revokeCert"
KEY_CHANGE = "keyChange"
DIRECTORY = "directory"
RENEWAL_INFO = "renewalInfo"
UNSIGNED = frozenset({DIRECTORY, RENEWAL_INFO})

ACCOUNT_REGISTER = 1
ACCOUNT_TOS_AGREED = 2
ACCOUNT_DEACTIVATE = 4

# RFC 5280 section 5.3.1 CRLReason names and codes (7 is unused).
REVOCATION_REASONS = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "certificateHold": 6,
    "removeFromCRL": 8,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}
