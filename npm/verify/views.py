"""Read what a dataplane really installed, as a view ``npm.verify.check`` can walk."""

from __future__ import annotations

from npm.dataplane import backend as backends
from npm.dataplane import names
from npm.dataplane.kernel import Runner
from npm.verify.kernel import IptablesView

DATAPLANES = ("iptables",)


def read_view(dataplane: str, runner: Runner | None = None, backend: str = "auto") -> IptablesView:
    """The kernel's rules and sets of ``dataplane`` in the namespace ``runner`` runs in.

    With ``backend`` auto, the iptables backend read is the one that holds our chains (what
    is enforced), else the one kube-proxy's markers name. Raises
    ``npm.dataplane.enforcer.ApplyError`` when the kernel cannot be read."""
    from npm.dataplane.enforcer import DataplaneConfig, Enforcer

    if dataplane not in DATAPLANES:
        raise ValueError(f"verify does not read the {dataplane} dataplane (it reads: {', '.join(DATAPLANES)})")
    runner = runner or Runner()
    if backend == "auto":
        backend = next((be for be in backends.BACKENDS if _holds_ours(runner, be)), "auto")
    enforcer = Enforcer("", config=DataplaneConfig(backend=backend), runner=runner)
    table, sets = enforcer.saved_state()
    return IptablesView(table, sets)


def _holds_ours(runner: Runner, backend: str) -> bool:
    if not backends.has_table(runner, backend, "filter"):
        return False
    res = runner.run([backends.Tools(backend).save, "-t", "filter"])
    return res.ok and f":{names.CHAIN_MAIN} " in res.stdout
