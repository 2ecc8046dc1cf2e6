"""Prometheus metrics of the enforcer daemon, in its own registries.

Names follow the Go original (``npm/metrics``): cluster-level gauges (``npm_num_*``,
``npm_pods_watched``), node-level summaries of execution time in milliseconds
(``npm_add_policy_exec_time``, ``npm_controller_*_exec_time`` with ``operation`` and
``had_error`` labels) and the Linux restore histogram and failure counter. The original's
``npm_ipset_counts`` (one series per set name) is left out on purpose: no label here takes
unbounded values. Additions of ours: ``npm_policy_enforcement_latency_seconds`` (event
seen to rules in the kernel), failed-closed policy counts, watch and apply health.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest

# Bounded label values: anything else is recorded as "other".
OPERATIONS = ("create", "update", "delete", "noop")
RESTORE_OPERATIONS = ("apply", "reconcile")  # what the controller was doing
KINDS = ("Pod", "Namespace", "NetworkPolicy", "Node", "ClusterNetworkPolicy")
TIERS = ("Admin", "Baseline")  # ClusterNetworkPolicy tiers
WATCH_EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_RESTORE_BUCKETS = tuple(0.016 * 2**i for i in range(14))  # 16 ms to ~2 minutes, as the original


def bounded(value: str, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``, else ``other`` (keeps label sets finite)."""
    return value if value in allowed else "other"


@dataclass
class Metrics:
    """Every metric, registered in ``node`` (per-node timings) or ``cluster`` (state sizes)."""

    node: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))
    cluster: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        c, n = self.cluster, self.node
        # Cluster metrics (sizes of what is enforced), as the original's /cluster-metrics.
        self.num_policies = Gauge(
            "npm_num_policies", "The number of current network policies for this node", registry=c
        )
        self.num_iptables_rules = Gauge(
            "npm_num_iptables_rules", "The number of current IPTable rules for this node", registry=c
        )
        self.num_ipsets = Gauge("npm_num_ipsets", "The number of current IP sets for this node", registry=c)
        self.num_ipset_entries = Gauge(
            "npm_num_ipset_entries", "The total number of entries in every IPSet", registry=c
        )
        self.cluster_policies = Gauge(
            "npm_cluster_policies", "ClusterNetworkPolicies enforced on this node, by tier", ["tier"], registry=c
        )
        self.cluster_policy_rules = Gauge(
            "npm_cluster_policy_iptables_rules",
            "iptables rules of the ClusterNetworkPolicy tier chains and policy chains, by tier",
            ["tier"],
            registry=c,
        )
        self.pods_watched = Gauge(
            "npm_pods_watched", "Number of Pods NPM tracks across the cluster", registry=c
        )
        self.pods_without_ip = Gauge(
            "npm_pods_without_ip",
            "Running pods left out of enforcement because they have no IP yet (no address is ever made up)",
            registry=c,
        )
        self.num_policies_failed_closed = Gauge(
            "npm_num_policies_failed_closed",
            "Policies the dataplane could not express and enforces as deny-all for their pods "
            "(ClusterNetworkPolicies: rules it could not express, failing closed as the API says)",
            registry=c,
        )
        self.invalid_objects = Gauge(
            "npm_invalid_objects",
            "Objects whose current version was rejected by validation (a last valid version stays in force), by kind",
            ["kind"],
            registry=c,
        )
        # Node metrics (timings), as the original's /node-metrics.
        self.add_policy_exec_time = Summary(
            "npm_add_policy_exec_time",
            "Execution time in milliseconds for adding a network policy (the apply that first enforced it)",
            ["had_error"],
            registry=n,
        )
        self.controller_policy_exec_time = Summary(
            "npm_controller_policy_exec_time",
            "Execution time in milliseconds for handling a network policy event in the controller",
            ["operation", "had_error"],
            registry=n,
        )
        self.controller_pod_exec_time = Summary(
            "npm_controller_pod_exec_time",
            "Execution time in milliseconds for handling a pod event in the controller",
            ["operation", "had_error"],
            registry=n,
        )
        self.controller_namespace_exec_time = Summary(
            "npm_controller_namespace_exec_time",
            "Execution time in milliseconds for handling a namespace event in the controller",
            ["operation", "had_error"],
            registry=n,
        )
        self.iptables_restore_latency = Histogram(
            "npm_linux_iptables_restore_latency_seconds",
            "Latency in seconds of one iptables-restore run, by controller operation (apply or reconcile)",
            ["operation"],
            buckets=_RESTORE_BUCKETS,
            registry=n,
        )
        self.iptables_restore_failures = Counter(
            "npm_linux_iptables_restore_failure_total",
            "Number of failed iptables-restore runs, by controller operation (apply or reconcile)",
            ["operation"],
            registry=n,
        )
        self.enforcement_latency = Histogram(
            "npm_policy_enforcement_latency_seconds",
            "Seconds from an object change being seen to the resulting rules being in the kernel",
            buckets=_LATENCY_BUCKETS,
            registry=n,
        )
        self.policies_failed_closed = Counter(
            "npm_policy_failed_closed_total",
            "Times a policy was found unenforceable and failed closed (deny-all for its pods)",
            registry=n,
        )
        self.apply_duration = Histogram(
            "npm_dataplane_apply_seconds",
            "Seconds one dataplane apply or reconcile took",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=n,
        )
        self.apply_failures = Counter(
            "npm_dataplane_apply_failure_total",
            "Dataplane applies or reconciles that raised or reported failures",
            ["operation"],
            registry=n,
        )
        self.watch_events = Counter(
            "npm_watch_events_total", "Watch events received, by kind and type", ["kind", "type"], registry=n
        )
        self.watch_relists = Counter(
            "npm_watch_relists_total", "Full lists of a kind (start, 410 Gone, resync)", ["kind"], registry=n
        )
        self.watch_errors = Counter(
            "npm_watch_errors_total", "Failed lists and watches (retried with backoff), by kind", ["kind"], registry=n
        )
        self.source_errors = Counter(
            "npm_manifest_errors_total", "Manifest files that failed to read or parse (last good kept)", registry=n
        )
        self.verify_mismatches = Gauge(
            "npm_verify_mismatches",
            "Connections on which this node's kernel disagreed with the policies at the last check (azure-npm verify)",
            registry=n,
        )
        self.verify_runs = Counter(
            "npm_verify_runs",
            "Checks of this node's kernel against the policies, by result (agree, disagree, skipped, error)",
            ["result"],
            registry=n,
        )
        self.last_apply_timestamp = Gauge(
            "npm_last_apply_timestamp_seconds", "Unix time of the last successful apply or reconcile", registry=n
        )

    def exec_time(self, kind: str) -> Summary | None:
        """The ``npm_controller_*_exec_time`` summary for a kind (None for nodes)."""
        return {
            "Pod": self.controller_pod_exec_time,
            "Namespace": self.controller_namespace_exec_time,
            "NetworkPolicy": self.controller_policy_exec_time,
        }.get(kind)

    def render(self, which: str = "all") -> bytes:
        """The text exposition of ``node``, ``cluster`` or ``all`` metrics."""
        if which == "node":
            return generate_latest(self.node)
        if which == "cluster":
            return generate_latest(self.cluster)
        return generate_latest(self.cluster) + generate_latest(self.node)

    def names(self) -> set[str]:
        """Every sample name these registries expose (used to check dashboards and alerts)."""
        suffixes = {"counter": ("_total",), "summary": ("_count", "_sum"), "histogram": ("_bucket", "_count", "_sum")}
        out: set[str] = set()
        for registry in (self.node, self.cluster):
            for metric in registry.collect():
                out.add(metric.name)
                out.update(metric.name + s for s in suffixes.get(metric.type, ()))
        return out
