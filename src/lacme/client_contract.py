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
`newOrder` takes the identifiers.
"""

ACCOUNT = "account"
NEW_ORDER = "newOrder"
REVOKE_CERT = "revokeCert"

ACCOUNT_REGISTER = 1
ACCOUNT_TOS_AGREED = 2
ACCOUNT_DEACTIVATE = 4
