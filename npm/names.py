"""Kernel object names: readable prefixes, wide hashes, hard length limits, collisions refused.

ipset names may hold 31 characters and iptables chain names 28 (the kernel's
``IPSET_MAXNAMELEN`` and ``XT_EXTENSION_MAXNAMELEN`` minus the terminator). A name is a
fixed prefix plus a base32 rendering of a blake2b digest of what the object *means*: 80
bits for sets and 75 bits for chains, never a 32-bit hash (the Go original used FNV-32 and
a collision there silently merged two sets). A :class:`NameRegistry` records
name -> meaning and refuses a second meaning for a name instead of sharing it.
"""

from __future__ import annotations

import base64
import hashlib

SET_PREFIX = "azure-npm-"
CHAIN_PREFIX = "AZURE-NPM"
INGRESS_POLICY_PREFIX = "AZURE-NPM-IN-"
EGRESS_POLICY_PREFIX = "AZURE-NPM-EG-"
MAX_SET_NAME = 31
MAX_CHAIN_NAME = 28
MAX_COMMENT = 255  # the xt_comment payload is 256 bytes including the terminator

# Base chains: fixed names, created once and rewritten as a whole on every change.
CHAIN_MAIN = "AZURE-NPM"
CHAIN_INGRESS = "AZURE-NPM-INGRESS"
CHAIN_EGRESS = "AZURE-NPM-EGRESS"
CHAIN_ACCEPT = "AZURE-NPM-ACCEPT"
CHAIN_INGRESS_ALLOW = "AZURE-NPM-INGRESS-ALLOW"
CHAIN_EGRESS_ALLOW = "AZURE-NPM-EGRESS-ALLOW"
CHAIN_SETS = "AZURE-NPM-SETS"  # never jumped to: one rule per set, its comment says what the set means
BASE_CHAINS = (CHAIN_MAIN, CHAIN_INGRESS, CHAIN_EGRESS, CHAIN_ACCEPT, CHAIN_INGRESS_ALLOW, CHAIN_EGRESS_ALLOW, CHAIN_SETS)


class NameCollision(Exception):
    """Two different meanings hashed to the same kernel name: refused, never shared."""


def _digest(text: str, chars: int) -> str:
    raw = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return base64.b32encode(raw).decode().rstrip("=")[:chars]


def set_name(meaning: str) -> str:
    """``azure-npm-`` plus 16 base32 characters (80 bits) of blake2b(meaning), lowercase."""
    name = SET_PREFIX + _digest(meaning, 16).lower()
    assert len(name) <= MAX_SET_NAME
    return name


def policy_chain_name(direction: str, identity: str) -> str:
    """``AZURE-NPM-IN-``/``AZURE-NPM-EG-`` plus 15 base32 characters (75 bits) of ``identity``.

    ``identity`` includes the chain's rendered rules, so a changed policy gets a new chain
    (a new generation) and the old one stays intact until the jump is switched.
    """
    prefix = INGRESS_POLICY_PREFIX if direction == "ingress" else EGRESS_POLICY_PREFIX
    name = prefix + _digest(identity, MAX_CHAIN_NAME - len(prefix))
    assert len(name) <= MAX_CHAIN_NAME
    return name


def is_ours_set(name: str) -> bool:
    """Whether an ipset name is one this enforcer creates."""
    return name.startswith(SET_PREFIX)


def is_ours_chain(name: str) -> bool:
    """Whether an iptables chain name is one this enforcer creates."""
    return name == CHAIN_MAIN or name.startswith(CHAIN_PREFIX + "-")


def comment(text: str) -> str:
    """A rule comment safe for iptables-restore quoting and within the kernel's limit."""
    clean = text.replace("\\", "/").replace('"', "'").replace("\n", " ")
    return clean[:MAX_COMMENT]


class NameRegistry:
    """Records which meaning each generated name stands for; refuses a second meaning."""

    def __init__(self) -> None:
        self.meaning: dict[str, str] = {}

    def claim(self, name: str, meaning: str) -> str:
        """Register ``name`` for ``meaning`` and return it; raise NameCollision on a clash."""
        known = self.meaning.setdefault(name, meaning)
        if known != meaning:
            raise NameCollision(f"kernel name {name} would stand for both {known!r} and {meaning!r}")
        return name
