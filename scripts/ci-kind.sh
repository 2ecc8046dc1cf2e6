#!/usr/bin/env bash
# The conformance scenarios on a fresh kind cluster: what .github/workflows/conformance-kind.yaml
# runs, kept here so that it can be linted, dry-run (tests/conformance/test_ci_kind_script.py)
# and run by hand the same way.
#
#   scripts/ci-kind.sh [--dry-run] [-- EXTRA-NPM-CONFORMANCE-ARGS...]
#
# 1. kind create cluster from kind-config/cluster.yaml, without --wait: that config disables
#    kind's CNI, so no node can be Ready before step 2 and kind's wait would only time out.
#    kind returns once kubeadm is done, with the API server up.
# 2. Apply kindnet from the pinned copy in kind-config/ ($NPM_KINDNET_MANIFEST overrides it),
#    with its NetworkPolicy enforcement off (python3 -m conformance.kindnet).
# 3. Wait for every node to be Ready (kindnet has written their CNI config).
# 4. nox -s conformance -- --backend kind --kind-cluster NAME: the backend reuses this cluster,
#    builds and loads the enforcer image, deploys it and runs the scenarios.
# On exit: after a failure, node and kube-system state and `kind export logs` go to the
# reports; then the cluster is deleted (unless KEEP_CLUSTER=1).
#
# --dry-run (or DRY_RUN=1) prints every command, as `+ cmd args`, without running any.
# Environment: KIND_VERSION (if set, `kind version` must report it), CLUSTER_NAME,
# NODES_READY_TIMEOUT, REPORTS, PYTHON, KEEP_CLUSTER=1, NPM_KINDNET_MANIFEST (file or URL).
# Needs docker, kind, kubectl and python3 with nox; CI runs it as root (see the workflow).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DRY_RUN="${DRY_RUN:-0}"
CLUSTER_NAME="${CLUSTER_NAME:-npm-conformance}"
KIND_CONFIG="kind-config/cluster.yaml"
# The pinned manifest; conformance/kindnet.py's DEFAULT_MANIFEST names the same file (tested).
KINDNET_SOURCE="${NPM_KINDNET_MANIFEST:-kind-config/kindnet-v1.0.0.yaml}"
NODES_READY_TIMEOUT="${NODES_READY_TIMEOUT:-300s}"
REPORTS="${REPORTS:-reports/conformance}"
PYTHON="${PYTHON:-python3}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"

usage() {
    # The header comment above, without its '#'.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

while (($#)); do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        -h | --help) usage; exit 0 ;;
        --) shift; break ;;
        *) echo "ci-kind.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
EXTRA_ARGS=("$@")

# Print a command, then run it unless this is a dry run.
run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [[ "$DRY_RUN" == 1 ]]; then
        return 0
    fi
    "$@"
}

die() {
    echo "ci-kind.sh: $*" >&2
    exit 1
}

check_tools() {
    local tool
    for tool in docker kind kubectl "$PYTHON"; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
    done
    if [[ -n "${KIND_VERSION:-}" ]]; then
        # The runner image has a kind of its own; make sure the pinned one is first on PATH.
        local actual
        actual="$(kind version)"
        [[ " $actual " == *" $KIND_VERSION "* ]] || die "kind is '$actual', expected $KIND_VERSION"
    fi
}

WORKDIR="$(mktemp -d)"
KUBECONFIG_FILE="$WORKDIR/kubeconfig"
CREATED=0

cleanup() {
    local rc=$?
    # Nothing here may stop the cleanup half-way, nor hide the run's own exit status.
    set +e
    if [[ "$CREATED" == 1 ]]; then
        if ((rc != 0)); then
            run kubectl --kubeconfig "$KUBECONFIG_FILE" get nodes -o wide
            run kubectl --kubeconfig "$KUBECONFIG_FILE" -n kube-system get pods -o wide
            run kind export logs "$REPORTS/kind-logs" --name "$CLUSTER_NAME"
        fi
        if [[ "$KEEP_CLUSTER" != 1 ]]; then
            run kind delete cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_FILE"
        fi
    fi
    rm -rf "$WORKDIR"
    exit "$rc"
}
trap cleanup EXIT

if [[ "$DRY_RUN" != 1 ]]; then
    check_tools
fi

CREATED=1
run kind create cluster --name "$CLUSTER_NAME" --config "$KIND_CONFIG" --kubeconfig "$KUBECONFIG_FILE"

run "$PYTHON" -m conformance.kindnet --from "$KINDNET_SOURCE" --out "$WORKDIR/kindnet.yaml"
run kubectl --kubeconfig "$KUBECONFIG_FILE" apply -f "$WORKDIR/kindnet.yaml"

run kubectl --kubeconfig "$KUBECONFIG_FILE" wait --for=condition=Ready nodes --all --timeout="$NODES_READY_TIMEOUT"

run "$PYTHON" -m nox -s conformance -- --backend kind --kind-cluster "$CLUSTER_NAME" ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"}
