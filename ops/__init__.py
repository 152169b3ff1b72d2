"""Operations tooling: schema building, chart checks and the metric-name checks of the
dashboard and alert rules. Standard library plus PyYAML; no network beyond the Go module proxy."""
