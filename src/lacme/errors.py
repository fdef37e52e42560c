"""The errors of a wrong configuration, which lacme reports as one line
naming the file, section, option or value at fault.  Other errors have
types of their own where they arise (privdrop.SpawnError,
certificate.CertificateError, client_contract.ContractError); anything else
is a bug, and shown as one."""


class ConfigError(ValueError):
    """An invalid configuration; the message is one line naming what and where."""
