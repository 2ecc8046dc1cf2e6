"""argparse types for model values, so that every command line reads them the same way."""

from __future__ import annotations

import argparse
import ipaddress

from kube.model import PortSpec


def port_type(text: str) -> PortSpec:
    """argparse type for ``80``, ``80/TCP``, ``53/udp``."""
    try:
        return PortSpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cidr_type(text: str) -> str:
    """argparse type for a CIDR such as ``10.244.0.0/16`` (host bits allowed)."""
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CIDR such as 10.244.0.0/16") from None
    return text
