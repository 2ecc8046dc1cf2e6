"""Policy lint: findings about policies that do nothing, cannot match, shadow each other or
lock pods out of DNS, each with the policy, the rule and a one-line reason.

Kinds: see ``simulator.lint_kinds`` (``npm-sim lint --help`` prints them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from kube.model import (
    DIRECTIONS,
    EGRESS,
    INGRESS,
    PROTOCOLS,
    Cluster,
    ContainerPort,
    Direction,
    IPBlock,
    Labels,
    NetworkPolicy,
    Peer,
    Pod,
    PortSpec,
    Rule,
)
from simulator import semantics
from simulator.classes import ip_blocks
from simulator.engine import NeedsRebuild, Simulator
from simulator.graph import representative_ip
from simulator.incremental import IncrementalSimulator
from simulator.lint_kinds import KINDS
from simulator.lint_tiers import critical_ports as tier_critical_ports
from simulator.lint_tiers import tier_findings
from simulator.outside import outside_endpoints
from simulator.tiers import cnp_key
from simulator.whatif import NamespaceScoped

SEVERITIES = ("info", "warning", "error")
DNS_LABELS = Labels({"k8s-app": "kube-dns"})
ASSUMED_DNS_IP = "10.96.0.10"
OUTSIDE_PROBES = ("203.0.113.1", "198.51.100.1")  # documentation ranges: "anywhere else"

# The kinds live in lint_kinds, so that the parser's help does not import this module.
__doc__ = __doc__.split("\n\nKinds: see", 1)[0] + "\n\n" + KINDS


@dataclass(frozen=True)
class Finding:
    """One lint finding."""

    kind: str
    severity: str
    policy: str  # "ns/name", or "" for namespace-level findings
    rule: str | None  # e.g. "ingress[0]", "egress[1].to[0]"; None for whole policies
    reason: str
    namespace: str = ""

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "severity": self.severity, "policy": self.policy, "rule": self.rule,
                "namespace": self.namespace, "reason": self.reason}

    def render(self) -> str:
        where = self.policy or f"namespace {self.namespace}"
        if self.rule:
            where += f" {self.rule}"
        return f"{self.severity}: {self.kind}: {where}: {self.reason}"


def _directions(policy: NetworkPolicy) -> list[Direction]:
    return [d for d in DIRECTIONS if d in policy.policy_types]


class Linter:
    """Runs every check on one cluster; ``run()`` returns findings in a stable order."""

    def __init__(self, cluster: Cluster, sim: Simulator | None = None) -> None:
        self.cluster = cluster
        self.sim = sim or Simulator(cluster)
        self.t = self.sim.classes
        self.pods_by_ns: dict[str, list[Pod]] = {}
        for pod in cluster.pods:
            self.pods_by_ns.setdefault(pod.namespace, []).append(pod)

    # ----- helpers ---------------------------------------------------------------------------
    def run(self) -> list[Finding]:
        out: list[Finding] = []
        out += self.selects_no_pod()
        out += self.peers_matching_nothing()
        out += self.named_ports()
        out += self.redundant_rules()
        out += self.unprotected()
        out += self.dns()
        out += self.ip_blocks_covering_pods()
        out += [Finding(*raw) for raw in tier_findings(self.sim)]
        return out

    # ----- checks ----------------------------------------------------------------------------
    def selects_no_pod(self) -> list[Finding]:
        out = []
        for policy in self.cluster.policies:
            if not len(self.sim.selected_classes(policy)):
                out.append(Finding("selects-no-pod", "warning", policy.key, None,
                                   f"podSelector {policy.pod_selector.describe()} selects no pod in namespace "
                                   f"{policy.namespace}", policy.namespace))
        return out

    def peers_matching_nothing(self) -> list[Finding]:
        out = []
        for policy in self.cluster.policies:
            for direction in _directions(policy):
                word = direction.peer_field
                for ri, rule in enumerate(direction.rules(policy)):
                    for pi, peer in enumerate(rule.peers):
                        where = f"{direction.word}[{ri}].{word}[{pi}]"
                        if peer.ip_block is not None:
                            if representative_ip(peer.ip_block) is None:
                                out.append(Finding("peer-matches-nothing", "warning", policy.key, where,
                                                   f"ipBlock {peer.ip_block.cidr}: its excepts remove every address",
                                                   policy.namespace))
                        elif not self.sim.peer_classes(policy, peer).any():
                            out.append(Finding("peer-matches-nothing", "warning", policy.key, where,
                                               f"{_describe_peer(peer)} matches no pod", policy.namespace))
        return out

    def named_ports(self) -> list[Finding]:
        out = []
        for policy in self.cluster.policies:
            selected = self.sim.selected_classes(policy)
            for direction in _directions(policy):
                for ri, rule in enumerate(direction.rules(policy)):
                    named = [(i, e) for i, e in enumerate(rule.ports) if e.is_named]
                    if not named:
                        continue
                    if direction == INGRESS:
                        classes, who = selected, "no selected pod"
                    else:
                        peers = self.sim.rule_peer_classes(policy, rule)
                        classes = np.arange(self.t.count) if peers is None else np.flatnonzero(peers)
                        who = "no destination pod"
                    for i, entry in named:
                        served = [p for c in classes for p in self.t.ports[c] if p.name == entry.port]
                        if any(p.protocol == entry.protocol for p in served):
                            continue
                        other = sorted({p.protocol for p in served})
                        reason = (f"named port {entry.port!r}/{entry.protocol}: {who} serves it"
                                  + (f" on {entry.protocol}; served on {'/'.join(other)} only" if other else ""))
                        out.append(Finding("named-port-unserved", "warning", policy.key,
                                           f"{direction.word}[{ri}].ports[{i}]", reason, policy.namespace))
        return out

    def unprotected(self) -> list[Finding]:
        out = []
        with_policy = {p.namespace for p in self.cluster.policies}
        # Namespaces whose pods a ClusterNetworkPolicy rule may decide for are not left alone.
        t, subjects = self.t, np.zeros(self.t.count, dtype=bool)
        for direction in (INGRESS, EGRESS):
            for tier_rule in self.sim.tiers.rules[direction]:
                subjects |= tier_rule.subject
        with_policy |= {t.namespaces[n] for n in np.unique(t.ns_id[subjects]).tolist() if n < len(t.namespaces)}
        for ns, pods in sorted(self.pods_by_ns.items()):
            pods = [p for p in pods if not p.host_network]
            if pods and ns not in with_policy:
                out.append(Finding("unprotected-namespace", "warning", "", None,
                                   f"{len(pods)} pod(s) and no NetworkPolicy: all traffic to and from them is "
                                   "allowed", ns))
        for direction in (INGRESS, EGRESS):
            only: dict[tuple[str, ...], list[str]] = {}
            for ns, pods in sorted(self.pods_by_ns.items()):
                scoped = [p for p in self.cluster.policies if p.namespace == ns and direction in p.policy_types]
                by_class: dict[int, tuple[str, ...]] = {}  # pods of one class are selected alike
                for pod in pods:
                    c = int(self.t.pod_class[self.t.pod_index[pod.key]])
                    if c not in by_class:
                        selecting = [p for p in scoped if semantics.policy_selects(p, pod)]
                        allow_all = bool(selecting) and all(_allows_all(p, direction) for p in selecting)
                        by_class[c] = tuple(p.key for p in selecting) if allow_all else ()
                    if by_class[c]:
                        only.setdefault(by_class[c], []).append(pod.key)
            for keys, pods in only.items():
                out.append(Finding("allow-all-only", "info", keys[0], None,
                                   f"{len(pods)} pod(s) (e.g. {pods[0]}) are isolated for {direction.word} only by "
                                   f"allow-all policies ({', '.join(keys)}): isolation without restriction",
                                   keys[0].split("/", 1)[0]))
        return out

    def dns(self) -> list[Finding]:
        cluster = self.cluster
        dns = [p for p in cluster.pods if p.namespace == "kube-system" and DNS_LABELS.items() <= p.labels.items()]
        assumed = not dns
        if assumed:
            dns = [Pod("kube-system", "kube-dns(assumed)", DNS_LABELS, ASSUMED_DNS_IP, (ASSUMED_DNS_IP,),
                       ports=(ContainerPort(53, "UDP", "dns"), ContainerPort(53, "TCP", "dns-tcp")))]
        scoped = NamespaceScoped(cluster)
        blocked: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        cnp_subjects: dict[int, list[str]] = {}  # class -> the ClusterNetworkPolicies with egress rules for it
        for tier_rule in self.sim.tiers.rules[EGRESS]:
            for c in np.flatnonzero(tier_rule.subject).tolist():
                names = cnp_subjects.setdefault(c, [])
                if cnp_key(tier_rule.policy) not in names:
                    names.append(cnp_key(tier_rule.policy))
        for c, rep in enumerate(self.t.reps):
            if not self.t.selectable[c]:
                continue
            egress_policies = [p.key for p in scoped.scoped(rep.namespace).policies
                               if EGRESS in p.policy_types and semantics.policy_selects(p, rep)]
            egress_policies += cnp_subjects.get(c, [])
            if not egress_policies:
                continue
            missing = [proto for proto in ("UDP", "TCP")
                       if not any(scoped.direction(rep, d, PortSpec(53, proto), EGRESS).allowed for d in dns)]
            if missing:
                members = [self.t.pods[i].key for i in np.flatnonzero(self.t.pod_class == c)]
                key = tuple(egress_policies)
                blocked.setdefault(key, []).extend((m, "/".join(missing)) for m in members)
        out = []
        target = "kube-dns pods in kube-system" + (" (none in the snapshot: assumed)" if assumed else "")
        for keys, pods in blocked.items():
            protos = sorted({p for _, ps in pods for p in ps.split("/")})
            tiers = any(k.startswith("cnp/") for k in keys)
            namespace = "" if keys[0].startswith("cnp/") else keys[0].split("/", 1)[0]
            out.append(Finding("dns-blocked", "error", keys[0], None,
                               f"egress {'rules' if tiers else 'isolation'} ({', '.join(keys)}) block"
                               f"{'' if tiers else 's'} DNS ({'/'.join(protos)} 53 to {target}) "
                               f"for {len(pods)} pod(s), e.g. {pods[0][0]}", namespace))
        return out

    def ip_blocks_covering_pods(self) -> list[Finding]:
        out = []
        pod_classes = self.t.selectable
        for policy in self.cluster.policies:
            for direction in _directions(policy):
                word = direction.peer_field
                for ri, rule in enumerate(direction.rules(policy)):
                    for pi, peer in enumerate(rule.peers):
                        if peer.ip_block is None:
                            continue
                        members = self.t.block_members(peer.ip_block) & pod_classes
                        count = int(self.t.sizes[members].sum())
                        if count:
                            out.append(Finding(
                                "ipblock-covers-pods", "warning", policy.key, f"{direction.word}[{ri}].{word}[{pi}]",
                                f"ipBlock {peer.ip_block.cidr} covers {count} pod address(es); whether ipBlocks match "
                                "pod traffic differs between implementations: select pods with selectors",
                                policy.namespace))
        return out

    # ----- redundancy ------------------------------------------------------------------------
    def critical_ports(self) -> dict[str, list[int]]:
        """Per protocol, ports where any rule's allowed set can start or stop (see redundant_rules)."""
        points: dict[str, set[int]] = {proto: {1} for proto in PROTOCOLS}
        for policy in self.cluster.policies:
            for rule in (*policy.ingress, *policy.egress):
                for e in rule.ports:
                    if isinstance(e.port, int):
                        end = e.end_port if e.end_port is not None else e.port
                        points[e.protocol].update((e.port, end + 1))
        for ports in self.t.ports:
            for p in ports:
                points[p.protocol].update((p.port, p.port + 1))
        for spec in tier_critical_ports(self.sim):  # where ClusterNetworkPolicy rules start or stop matching
            points[spec.protocol].add(spec.port)
        return {proto: sorted(n for n in pts if 1 <= n <= 65535) for proto, pts in points.items()}

    def _rule_ports(self, rule: Rule, critical: dict[str, list[int]]) -> list[PortSpec]:
        """The critical ports a rule admits: removing it can change verdicts only there."""
        if not rule.ports:
            return [PortSpec(n, proto) for proto, ns in critical.items() for n in ns]
        out: set[PortSpec] = set()
        for e in rule.ports:
            if e.port is None:
                out.update(PortSpec(n, e.protocol) for n in critical[e.protocol])
            elif isinstance(e.port, str):  # the numbers the classes serve the name on
                numbers = np.unique(self.t.named_port_numbers(e.port, e.protocol))
                out.update(PortSpec(int(n), e.protocol) for n in numbers if n)
            else:
                end = e.end_port if e.end_port is not None else e.port
                out.add(PortSpec(e.port, e.protocol))
                out.update(PortSpec(n, e.protocol) for n in critical[e.protocol] if e.port < n <= end)
        return sorted(out, key=lambda s: (s.protocol, s.port))

    @staticmethod
    def _probes(rule: Rule, everything: list[str], inside: dict[IPBlock, set[str]]) -> list[str]:
        """The probe addresses ``rule`` admits (``inside``: the probes in each ipBlock)."""
        if not rule.peers:
            return everything
        hit = set().union(*(inside[p.ip_block] for p in rule.peers if p.ip_block is not None))
        return [ip for ip in everything if ip in hit]

    def redundant_rules(self) -> list[Finding]:
        """A safe set of removable rules, built greedily and verified (see the module docstring)."""
        critical = self.critical_ports()
        everything = list(OUTSIDE_PROBES)
        for block in ip_blocks(self.cluster):
            rep = representative_ip(block)
            if rep is not None and rep not in everything:
                everything.append(rep)
            for net in block.except_networks:
                ip = str(net.network_address)
                if ip not in everything:
                    everything.append(ip)
        if self.cluster.cluster_policies:  # their networks and nodes split the outside further
            for endpoint in outside_endpoints([self.cluster]):
                if endpoint.address not in everything:
                    everything.append(endpoint.address)
        inside = {block: {ip for ip in everything if block.contains(ip)} for block in ip_blocks(self.cluster)}
        base = IncrementalSimulator(self.sim)
        removed: dict[str, set[tuple[str, int]]] = {}
        out = []
        for policy in self.cluster.policies:
            if not len(self.sim.selected_classes(policy)):
                continue  # its rules do nothing; reported as selects-no-pod
            for direction in _directions(policy):
                for ri, rule in enumerate(direction.rules(policy)):
                    trial = {**removed, policy.key: removed.get(policy.key, set()) | {(direction, ri)}}
                    changes = {k: _without(self.cluster.policy_by_key[k], r) for k, r in trial.items()
                               if k.split("/", 1)[0] == policy.namespace}
                    ports = self._rule_ports(rule, critical)
                    probes = self._probes(rule, everything, inside) if (not rule.peers or any(
                        p.ip_block for p in rule.peers)) else []
                    if self._unchanged(base, changes, ports, probes):
                        removed = trial
                        out.append(Finding("redundant-rule", "info", policy.key, f"{direction.word}[{ri}]",
                                           "covered by other rules: removing it (with the other redundant rules) "
                                           "changes no verdict", policy.namespace))
        if out:
            self.verify_removal(removed)
        return out

    def _unchanged(self, base: IncrementalSimulator, changes: dict[str, NetworkPolicy], ports: Sequence[PortSpec],
                   probes: Sequence[str]) -> bool:
        if not ports:
            return True  # the rule admits no port at all (e.g. a named port nobody serves)
        try:
            new, update = base.with_policies(changes, ports)
        except NeedsRebuild:
            return False
        cols = new.touched
        for spec in ports:
            b_cols, b_rows = base.blocks(spec, cols)
            n_cols, n_rows = new.blocks(spec, cols)
            if not (np.array_equal(b_cols, n_cols) and np.array_equal(b_rows, n_rows)):
                return False
            for ip in probes:  # only the touched namespaces' verdicts towards addresses can change
                bi, be = self.sim.external(ip, spec, update.namespaces)
                ni, ne = new.sim.external(ip, spec, update.namespaces)
                if not (np.array_equal(bi, ni) and np.array_equal(be, ne)):
                    return False
        return True

    def verify_removal(self, removed: dict[str, set[tuple[str, int]]]) -> None:
        """Re-evaluate from scratch with every reported rule removed; raise if anything changed."""
        policies = tuple(_without(p, removed[p.key]) if p.key in removed else p for p in self.cluster.policies)
        other = Simulator(replace(self.cluster, policies=policies), classes=self.t)  # finer classes stay valid
        critical = self.critical_ports()
        ports = [PortSpec(n, proto) for proto, ns in critical.items() for n in ns]
        for spec in ports:
            if not np.array_equal(self.sim.class_matrix(spec), other.class_matrix(spec)):
                raise AssertionError(f"redundant-rule set changes verdicts on {spec}")


def _without(policy: NetworkPolicy, removed: Iterable[tuple[str, int]]) -> NetworkPolicy:
    gone = set(removed)
    return replace(
        policy,
        ingress=tuple(r for i, r in enumerate(policy.ingress) if (INGRESS, i) not in gone),
        egress=tuple(r for i, r in enumerate(policy.egress) if (EGRESS, i) not in gone),
    )


def _allows_all(policy: NetworkPolicy, direction: str) -> bool:
    return any(not r.peers and not r.ports for r in direction.rules(policy))


def _describe_peer(peer: Peer) -> str:
    parts = []
    if peer.namespace_selector is not None:
        parts.append(f"namespaceSelector {peer.namespace_selector.describe()}")
    if peer.pod_selector is not None:
        parts.append(f"podSelector {peer.pod_selector.describe()}")
    return " + ".join(parts) or "peer"


def lint(cluster: Cluster, sim: Simulator | None = None) -> list[Finding]:
    """Every finding for ``cluster`` (see the module docstring)."""
    return Linter(cluster, sim).run()


def failed(findings: Sequence[Finding], fail_on: str | None) -> bool:
    """Whether ``--fail-on warning|error`` is triggered (warning includes errors)."""
    if fail_on is None:
        return False
    floor = SEVERITIES.index(fail_on)
    return any(SEVERITIES.index(f.severity) >= floor for f in findings)


def to_text(findings: Sequence[Finding]) -> str:
    if not findings:
        return "no findings\n"
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    lines = [f.render() for f in findings]
    lines.append(f"{len(findings)} finding(s): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines) + "\n"


def to_json(findings: Sequence[Finding]) -> dict[str, object]:
    """``{"findings": [...], "counts": {...}}``."""
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    return {"findings": [f.to_json() for f in findings], "counts": counts}


def render_json(findings: Sequence[Finding]) -> str:
    return json.dumps(to_json(findings), indent=2) + "\n"


__all__ = ["Finding", "Linter", "failed", "lint", "render_json", "to_json", "to_text"]
