# Operations checks of the Helm chart, its alert rules and its Grafana dashboard.
# Included by the top-level Makefile (`include ops/ops.mk`); uses its PY and `install`.
#
#   make ops-tools   build helm and kubeconform from the Go module proxy into .stack/tools
#                    (pinned in ops/versions.env; ~5 min the first time, instant after) and
#                    install promtool (Debian package prometheus) if it is missing
#   make ops-check   every offline check (ops/check.py): helm lint, helm template of the
#                    default/small/large values, kubeconform -strict against schemas built
#                    from k8s.io/kubernetes + KEDA + prometheus-operator CRDs, the chart's
#                    promises, promtool check/test rules, the dashboard's metric names
OPS_TOOLS_DIR ?= $(CURDIR)/.stack/tools
OPS_PY ?= $(PY)

.PHONY: ops-tools ops-check

ops-tools:
	@OPS_TOOLS_DIR="$(OPS_TOOLS_DIR)" bash ops/install-tools.sh
	@command -v promtool >/dev/null 2>&1 || python3 -c "from stack.process import apt_install; apt_install(['prometheus'], 'ops-tools')"

ops-check: install ops-tools
	@OPS_TOOLS_DIR="$(OPS_TOOLS_DIR)" $(OPS_PY) -m ops.check
