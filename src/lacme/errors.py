"""The errors of a wrong configuration, which lacme reports as one line
naming the file, section, option or value at fault.  Other errors have
types of their own where they arise (privdrop.SpawnError,
client_contract.ContractError), or here when the master catches them without
the module that raises them loaded (CertificateError, of lacme.certificate,
which imports cryptography); anything else is a bug, and shown as one."""


class ConfigError(ValueError):
    """An invalid configuration; the message is one line naming what and where."""


class CertificateError(Exception):
    """A refusal of a key, CSR or certificate (lacme.certificate); the message is one line."""
