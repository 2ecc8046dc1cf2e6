"""The kinds of ``npm-sim lint`` findings, as text: the lint module's documentation and the
command's help, kept apart from ``simulator.lint`` so that building the parser imports no
engine."""

KINDS = """\
Kinds (severity); each kind is the finding's stable rule id (the SARIF ruleId), which the
annotation npm-sim.io/ignore: RULE,... on a policy or namespace, or --config, suppresses:

- ``selects-no-pod`` (warning): the podSelector selects no pod of the namespace;
- ``peer-matches-nothing`` (warning): a from/to entry whose selectors match no pod, or an
  ipBlock whose excepts remove its whole cidr;
- ``named-port-unserved`` (warning): a named port that no pod it applies to serves (the
  selected pods for ingress, the peer pods for egress), or serves only on another protocol;
- ``redundant-rule`` (info): rules covered by other rules, reported as a *safe set*: removing
  all of them together leaves every verdict unchanged (verified by re-evaluating with all of
  them removed); of two rules covering each other only one is listed;
- ``unprotected-namespace`` (warning): a namespace with pods and no policy at all;
- ``allow-all-only`` (info): pods isolated for a direction only by policies with an
  allow-everything rule (no peers, no ports);
- ``dns-blocked`` (error): egress isolation leaves pods unable to reach DNS (UDP or TCP 53 on
  the kube-dns pods of kube-system, or an assumed one when the snapshot has none);
- ``ipblock-covers-pods`` (warning): an ipBlock that contains pod addresses (implementations
  differ on whether ipBlocks match pod traffic; selectors say what is meant);
- ``cnp-fail-closed`` (warning): a ClusterNetworkPolicy peer this implementation does not
  understand (``domainNames``, a field of a newer version): its Accept rule matches nothing, its
  Deny or Pass rule denies all traffic of the direction;
- ``cnp-rule-shadowed`` (warning): a ClusterNetworkPolicy rule that can never decide anything:
  every connection it matches is decided first by earlier rules of its policy, by policies
  before it in its tier, by the Admin tier (for a Baseline rule), or by NetworkPolicies that
  select all its subjects (Baseline); exact over classes, outside blocks and critical ports;
- ``cnp-priority-overlap`` (warning; info when the rules take the same action): two
  ClusterNetworkPolicies of one tier and priority with rules that match a same connection,
  whose order the API leaves undefined (this tool goes by name).
"""

# One line per kind, for machine outputs (SARIF rule descriptions).
SUMMARIES = {
    "selects-no-pod": "The podSelector selects no pod of the namespace",
    "peer-matches-nothing": "A from/to entry matches nothing",
    "named-port-unserved": "A named port that no pod it applies to serves",
    "redundant-rule": "A rule covered by other rules",
    "unprotected-namespace": "A namespace with pods and no policy",
    "allow-all-only": "Pods isolated only by allow-everything rules",
    "dns-blocked": "Egress isolation leaves pods unable to reach DNS",
    "ipblock-covers-pods": "An ipBlock that contains pod addresses",
    "cnp-fail-closed": "A ClusterNetworkPolicy peer not understood: its rule fails closed",
    "cnp-rule-shadowed": "A ClusterNetworkPolicy rule that can never decide anything",
    "cnp-priority-overlap": "ClusterNetworkPolicies of one tier and priority that match a same connection",
}

__all__ = ["KINDS", "SUMMARIES"]
