#!/usr/bin/env bash
# The network-policy gate of a pull request: what examples/ci/network-policy.yaml runs,
# kept in a script so that it can be run by hand and tested (tests/whatif/test_ci_example.py).
#
#   policy-gate.sh BASE_DIR PR_DIR [ASSERTIONS]
#
# BASE_DIR and PR_DIR are the repository at the base branch and at the pull request;
# ASSERTIONS is a path inside PR_DIR. The tools run in PR_DIR, so that annotations and SARIF
# name files as the repository does (manifests/shop.yaml). In each checkout the manifests
# are rendered with `helm template` when $CHART (a path inside the repository) is set (then
# results point at lines of the rendered stream in $OUT, not at the chart's templates), else
# read from $MANIFESTS (default: manifests/). Then:
#   1. npm-sim diff base -> pr: the connections the change gains and loses, by workload,
#      outside endpoints included; the markdown goes to $GITHUB_STEP_SUMMARY (or stdout);
#   2. the same diff as SARIF ($OUT/npm-sim-diff.sarif) with the assertions it breaks, and
#      npm-sim lint of the pull request as SARIF ($OUT/npm-sim-lint.sarif), for code scanning;
#   3. GitHub annotations of both on stdout (inline in the pull request's files view);
#   4. npm-sim check of the assertions on the pull request's manifests.
# Exit status: 0 when every assertion holds (and, with FAIL_ON=gained|lost|any, the change
# has no such connections); 1 when an assertion fails or the change breaks one; 2 on bad
# input. Environment: CHART, HELM_VALUES (a values file for helm), MANIFESTS, OUT (default
# npm-sim-out), NPM_SIM (default: npm-sim), FAIL_ON, LINT_CONFIG (npm-sim lint --config).
set -euo pipefail

if [ $# -lt 2 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
    [ $# -ge 2 ] || exit 2
    exit 0
fi
BASE="$(cd "$1" && pwd)"
PR="$2"
ASSERTIONS="${3:-}"
OUT="${OUT:-npm-sim-out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
read -r -a NPM_SIM <<< "${NPM_SIM:-npm-sim}"  # a command line: "npm-sim", "python3 -m simulator.cli"
MANIFESTS="${MANIFESTS:-manifests}"
SUMMARY="${GITHUB_STEP_SUMMARY:-/dev/stdout}"
cd "$PR"

if [ -n "${CHART:-}" ]; then
    helm template release "$BASE/$CHART" ${HELM_VALUES:+--values "$BASE/$HELM_VALUES"} > "$OUT/base.yaml"
    helm template release "$CHART" ${HELM_VALUES:+--values "$HELM_VALUES"} > "$OUT/pr.yaml"
    before="$OUT/base.yaml"
    after="$OUT/pr.yaml"
else
    before="$BASE/$MANIFESTS"
    after="$MANIFESTS"
fi

assert_args=()
[ -n "$ASSERTIONS" ] && assert_args=(--assertions "$ASSERTIONS")
fail_args=()
[ -n "${FAIL_ON:-}" ] && fail_args=(--fail-on "$FAIL_ON")
lint_args=()
[ -n "${LINT_CONFIG:-}" ] && lint_args=(--config "$LINT_CONFIG")

status=0
record() {  # keep the worst exit status: 2 (bad input, or a tool that did not run) over 1 over 0
    local code="$1"
    [ "$code" -gt 2 ] && code=2
    if [ "$code" -eq 2 ] || { [ "$code" -eq 1 ] && [ "$status" -eq 0 ]; }; then status="$code"; fi
}

diff_cmd=("${NPM_SIM[@]}" diff --before "$before" --after "$after" "${assert_args[@]}" "${fail_args[@]}")
{ echo "## Network policy: what this pull request changes"; echo; } >> "$SUMMARY"
code=0; "${diff_cmd[@]}" -o markdown >> "$SUMMARY" || code=$?; record "$code"
code=0; "${diff_cmd[@]}" -o sarif > "$OUT/npm-sim-diff.sarif" || code=$?; record "$code"
code=0; "${diff_cmd[@]}" -o github || code=$?; record "$code"
# lint informs (its findings are annotations and code-scanning alerts); it fails nothing here
code=0; "${NPM_SIM[@]}" lint -f "$after" "${lint_args[@]}" -o sarif > "$OUT/npm-sim-lint.sarif" || code=$?
[ "$code" -ge 2 ] && record 2
"${NPM_SIM[@]}" lint -f "$after" "${lint_args[@]}" -o github || true
if [ -n "$ASSERTIONS" ]; then
    { echo; echo "### Assertions"; echo; echo '```'; } >> "$SUMMARY"
    code=0; "${NPM_SIM[@]}" check -f "$after" --assertions "$ASSERTIONS" >> "$SUMMARY" || code=$?; record "$code"
    echo '```' >> "$SUMMARY"
fi
exit "$status"
