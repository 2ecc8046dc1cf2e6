"""Choosing the dataplane: iptables (ipsets and iptables rules) or nftables (one table)."""

from __future__ import annotations

from npm.dataplane.enforcer import DATAPLANES, DataplaneConfig, Enforcer
from npm.dataplane.kernel import Runner
from npm.dataplane.nft_enforcer import NftEnforcer

__all__ = ["DATAPLANES", "make_enforcer"]


def make_enforcer(
    node_name: str, config: DataplaneConfig | None = None, runner: Runner | None = None
) -> Enforcer | NftEnforcer:
    """The enforcer of ``config.kind`` (default iptables) for ``node_name``."""
    config = config or DataplaneConfig()
    if config.kind == "nftables":
        return NftEnforcer(node_name, config=config, runner=runner)
    return Enforcer(node_name, config=config, runner=runner)
