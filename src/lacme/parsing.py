"""The small value syntaxes more than one process reads the same way.
Standard library only, and light: lacme-accountd imports it for yes_no."""


def yes_no(value: str, default: bool) -> bool:
    """A Yes/No setting, any case; DEFAULT when VALUE is empty.  ValueError
    otherwise: 0.8.2 took anything else silently for one or the other, e.g.
    `iptables = true` for No."""
    if not value:
        return default
    if value.lower() not in ("yes", "no"):
        raise ValueError("expected Yes or No")
    return value.lower() == "yes"


def is_ip_address(text: str) -> bool:
    """Whether TEXT is an IPv4 or IPv6 address (RFC 8738 makes it an `ip`
    identifier, anything else is a `dns` one)."""
    import ipaddress  # not for lacme-accountd, which needs only yes_no

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
