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
from functools import lru_cache

from kube.model import Direction

SET_PREFIX = "azure-npm-"
CHAIN_PREFIX = "AZURE-NPM"
INGRESS_POLICY_PREFIX = "AZURE-NPM-IN-"
EGRESS_POLICY_PREFIX = "AZURE-NPM-EG-"
MAX_SET_NAME = 31
MAX_CHAIN_NAME = 28
MAX_COMMENT = 255  # the xt_comment payload is 256 bytes including the terminator

# Base chains: fixed names, created once and then changed in place.
CHAIN_MAIN = "AZURE-NPM"
CHAIN_INGRESS = "AZURE-NPM-INGRESS"
CHAIN_EGRESS = "AZURE-NPM-EGRESS"
CHAIN_ACCEPT = "AZURE-NPM-ACCEPT"
CHAIN_INGRESS_ALLOW = "AZURE-NPM-INGRESS-ALLOW"
CHAIN_EGRESS_ALLOW = "AZURE-NPM-EGRESS-ALLOW"
# Index chains, never jumped to (no per-packet cost): their rule comments record what each
# set means and which policies are applied, so both survive restarts and can be read back.
CHAIN_SETS = "AZURE-NPM-SETS"
CHAIN_POLICIES = "AZURE-NPM-POLICIES"
# Per-namespace dispatch chains (a policy only selects pods of its own namespace).
INGRESS_NS_PREFIX = "AZURE-NPM-NSI-"
EGRESS_NS_PREFIX = "AZURE-NPM-NSE-"
# ---- ClusterNetworkPolicy (npm/dataplane/translate_cnp.py) ----
# One tier chain per tier and direction (its CNPs in priority order), one chain per CNP and
# direction (content-named like a policy chain), and the chain a Pass rule goes to.
CHAIN_ADMIN_INGRESS = "AZURE-NPM-ADMIN-INGRESS"
CHAIN_ADMIN_EGRESS = "AZURE-NPM-ADMIN-EGRESS"
CHAIN_BASELINE_INGRESS = "AZURE-NPM-BASELINE-INGRESS"
CHAIN_BASELINE_EGRESS = "AZURE-NPM-BASELINE-EGRESS"
CHAIN_CNP_PASS = "AZURE-NPM-CNP-PASS"
ADMIN_INGRESS_PREFIX = "AZURE-NPM-AI-"
ADMIN_EGRESS_PREFIX = "AZURE-NPM-AE-"
BASELINE_INGRESS_PREFIX = "AZURE-NPM-BI-"
BASELINE_EGRESS_PREFIX = "AZURE-NPM-BE-"
CNP_CHAIN_PREFIXES = (ADMIN_INGRESS_PREFIX, ADMIN_EGRESS_PREFIX, BASELINE_INGRESS_PREFIX, BASELINE_EGRESS_PREFIX)
CNP_TIER_CHAINS = (CHAIN_ADMIN_INGRESS, CHAIN_ADMIN_EGRESS, CHAIN_BASELINE_INGRESS, CHAIN_BASELINE_EGRESS)
# A CNP's key in the dataplane: NetworkPolicy keys are "<ns>/<name>" and a namespace name
# holds no colon, so the two never collide.
CNP_KEY_PREFIX = "cnp:"
# ---- end ClusterNetworkPolicy ----


class NameCollision(Exception):
    """Two different meanings hashed to the same kernel name: refused, never shared."""


@lru_cache(maxsize=1 << 16)
def _digest(text: str, chars: int) -> str:
    raw = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return base64.b32encode(raw).decode().rstrip("=")[:chars]


def set_name(meaning: str) -> str:
    """``azure-npm-`` plus 16 base32 characters (80 bits) of blake2b(meaning), lowercase."""
    name = SET_PREFIX + _digest(meaning, 16).lower()
    assert len(name) <= MAX_SET_NAME
    return name


def policy_chain_name(direction: Direction, identity: str) -> str:
    """``AZURE-NPM-IN-``/``AZURE-NPM-EG-`` plus 15 base32 characters (75 bits) of ``identity``.

    ``identity`` includes the chain's rendered rules, so a changed policy gets a new chain
    (a new generation) and the old one stays intact until the jump is switched.
    """
    prefix = direction.pick(INGRESS_POLICY_PREFIX, EGRESS_POLICY_PREFIX)
    name = prefix + _digest(identity, MAX_CHAIN_NAME - len(prefix))
    assert len(name) <= MAX_CHAIN_NAME
    return name


def cluster_policy_chain_name(admin: bool, direction: Direction, identity: str) -> str:
    """``AZURE-NPM-AI-``/``-AE-`` (Admin tier) or ``-BI-``/``-BE-`` (Baseline) plus 15 base32
    characters (75 bits) of ``identity`` (the CNP's key, tier, direction and rendered rules)."""
    if admin:
        prefix = direction.pick(ADMIN_INGRESS_PREFIX, ADMIN_EGRESS_PREFIX)
    else:
        prefix = direction.pick(BASELINE_INGRESS_PREFIX, BASELINE_EGRESS_PREFIX)
    return prefix + _digest(identity, MAX_CHAIN_NAME - len(prefix))


def tier_of_chain(chain: str) -> str:
    """Which tier a chain of ours evaluates: ``Admin``, ``NetworkPolicy``, ``Baseline``, or ``""``."""
    if chain in (CHAIN_ADMIN_INGRESS, CHAIN_ADMIN_EGRESS) or chain.startswith(CNP_CHAIN_PREFIXES[:2]):
        return "Admin"
    if chain in (CHAIN_BASELINE_INGRESS, CHAIN_BASELINE_EGRESS) or chain.startswith(CNP_CHAIN_PREFIXES[2:]):
        return "Baseline"
    if chain.startswith((INGRESS_NS_PREFIX, EGRESS_NS_PREFIX, INGRESS_POLICY_PREFIX, EGRESS_POLICY_PREFIX)):
        return "NetworkPolicy"
    return ""


def namespace_chain_name(direction: Direction, namespace: str) -> str:
    """``AZURE-NPM-NSI-``/``AZURE-NPM-NSE-`` plus 14 base32 characters (70 bits) of the namespace."""
    prefix = direction.pick(INGRESS_NS_PREFIX, EGRESS_NS_PREFIX)
    return prefix + _digest(f"{direction.word}:{namespace}", MAX_CHAIN_NAME - len(prefix))


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


def rule_comment(key: str, what: str, limit: int = MAX_COMMENT) -> str:
    """``"<policy key> <what>"`` within ``limit``; a long key is shortened in the middle so
    the rule position (``ingress[0] from[1] ports[0]``) always survives."""
    room = limit - len(what) - 1
    if len(key) > room:
        head = (room - 3) // 2
        key = key[:head] + "..." + key[len(key) - (room - 3 - head) :]
    return comment(f"{key} {what}")[:limit]


def nft_name(prefix: str, identity: str) -> str:
    """An nftables chain or set name: ``prefix`` plus 16 base32 characters (80 bits) of ``identity``."""
    return prefix + _digest(identity, 16).lower()


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
