#!/usr/bin/env bash
# Builds helm and kubeconform from the Go module proxy into .stack/tools (or $OPS_TOOLS_DIR),
# at the versions pinned in ops/versions.env.
#
# Idempotent and fast the second time: a binary whose embedded module version (what
# `go version -m` reads from the binary itself) already equals the pin is kept as it is.
# Builds run under `nice` because they share two cores with everything else on the machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=ops/versions.env
source "$ROOT/ops/versions.env"
TOOLS="${OPS_TOOLS_DIR:-$ROOT/.stack/tools}"
NICE="${OPS_NICE:-15}"

if ! command -v go >/dev/null 2>&1; then
    echo "ops-tools: the go command is needed to build helm and kubeconform (install Go >= 1.26)" >&2
    exit 1
fi
mkdir -p "$TOOLS"

# The binary's own record of the module it was built from, e.g. "v3.22.0"; empty if absent.
built_version() {
    local binary="$1" module="$2"
    [[ -x "$binary" ]] || return 0
    go version -m "$binary" 2>/dev/null | awk -v m="$module" '$1 == "mod" && $2 == m { print $3 }'
}

install_tool() {
    local name="$1" module="$2" package="$3" version="$4" ldflags="${5:-}"
    local binary="$TOOLS/$name" have
    # The link flags are not in the binary's build record: a stamp beside it keeps them.
    local stamp="$TOOLS/.$name.build" wanted="$version $ldflags"
    have="$(built_version "$binary" "$module")"
    if [[ "$have" == "$version" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
        echo "ops-tools: $name $version already in $TOOLS"
        return 0
    fi
    echo "ops-tools: building $name $version from $module (was: ${have:-absent}); the first build takes minutes"
    local start=$SECONDS
    # GOTOOLCHAIN=local: fail plainly rather than fetch another Go if a pin ever needs one.
    GOBIN="$TOOLS" GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
        nice -n "$NICE" go install -trimpath -ldflags "-s -w $ldflags" "$package@$version"
    have="$(built_version "$binary" "$module")"
    if [[ "$have" != "$version" ]]; then
        echo "ops-tools: $binary reports module version '${have}', expected $version" >&2
        exit 1
    fi
    printf '%s' "$wanted" > "$stamp"
    echo "ops-tools: built $name $version in $((SECONDS - start)) s"
}

helm_flags="-X $HELM_MODULE/internal/version.version=$HELM_VERSION"
for pkg in pkg/chartutil pkg/lint/rules; do
    helm_flags+=" -X $HELM_MODULE/$pkg.k8sVersionMajor=1 -X $HELM_MODULE/$pkg.k8sVersionMinor=$HELM_DEFAULT_KUBE_MINOR"
done
install_tool helm "$HELM_MODULE" "$HELM_MODULE/cmd/helm" "$HELM_VERSION" "$helm_flags"
install_tool kubeconform "$KUBECONFORM_MODULE" "$KUBECONFORM_MODULE/cmd/kubeconform" "$KUBECONFORM_VERSION"
