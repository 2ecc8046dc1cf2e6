"""Read what a dataplane really installed, as a view ``npm.verify.check`` can walk."""

from __future__ import annotations

from npm.dataplane import backend as backends
from npm.dataplane import names
from npm.dataplane.kernel import Runner
from npm.verify.kernel import IptablesView
from npm.verify.nft_view import NftView

DATAPLANES = ("iptables", "nftables")


class KernelUnreadable(RuntimeError):
    """The kernel could not be read (the message says which tool failed)."""


def read_view(dataplane: str, runner: Runner | None = None, backend: str = "auto",
              notes: list[str] | None = None) -> IptablesView | NftView:
    """The rules and sets of ``dataplane`` in the namespace ``runner`` runs in.

    iptables: with ``backend`` auto, the backend read is the one that holds our chains (what
    is enforced), else the one kube-proxy's markers name. nftables: our table; a kernel without
    it is an empty table (nothing of ours filters), said in ``notes``. Raises
    :class:`KernelUnreadable`."""
    from npm.dataplane.enforcer import ApplyError, DataplaneConfig, Enforcer

    if dataplane not in DATAPLANES:
        raise ValueError(f"verify does not read the {dataplane} dataplane (it reads: {', '.join(DATAPLANES)})")
    runner = runner or Runner()
    if dataplane == "nftables":
        return _read_nft(runner, notes)
    if backend == "auto":
        backend = next((be for be in backends.BACKENDS if _holds_ours(runner, be)), "auto")
    try:
        table, sets = Enforcer("", config=DataplaneConfig(backend=backend), runner=runner).saved_state()
    except ApplyError as exc:
        raise KernelUnreadable(str(exc)) from None
    return IptablesView(table, sets)


def _holds_ours(runner: Runner, backend: str) -> bool:
    if not backends.has_table(runner, backend, "filter"):
        return False
    res = runner.run([backends.Tools(backend).save, "-t", "filter"])
    return res.ok and f":{names.CHAIN_MAIN} " in res.stdout


def _read_nft(runner: Runner, notes: list[str] | None) -> NftView:
    from npm.dataplane.nft import TABLE_REF, list_table, no_table, read_table

    res = list_table(runner)
    if no_table(res):
        if notes is not None:
            notes.append(f"this kernel has no table {TABLE_REF}: nothing of ours filters")
        return NftView(None)
    if not res.ok:
        raise KernelUnreadable(f"nft list table {TABLE_REF}: {res.stderr.strip() or res.rc}")
    try:
        return NftView(read_table(res.stdout))
    except (ValueError, KeyError, TypeError) as exc:
        raise KernelUnreadable(f"nft -j list table {TABLE_REF} printed what cannot be read: {exc!r}") from None
