"""Metric names read by PromQL expressions (dashboard panels, alert rules)."""

from __future__ import annotations

import pytest

from ops.promql import grafana_variable_metric_names, metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('histogram_quantile(0.95, sum by (le, stage) (rate(vcfscreen_stage_duration_seconds_bucket{namespace=~"$namespace"}[$__rate_interval])))',
         {"vcfscreen_stage_duration_seconds_bucket"}),
        ("sum(rate(a_total[5m] offset 1h)) by (job) / on(job) group_left(instance) b > 1e-9", {"a_total", "b"}),
        ('(sum(increase(x{a="}", b=~"[a-z]+"}[30m])) or on() vector(0)) < 1 and y unless z', {"x", "y", "z"}),
        ("count(vcfscreen_build_info) without (version)", {"vcfscreen_build_info"}),
        ("max(sum by (model) (rate(q[2m])) / clamp_min(sum by (model) (rate(s[2m])), 0.001))", {"q", "s"}),
        ("absent(up{job='w'} == 1)", {"up"}),
        ("topk(3, foo:recorded_rate5m) * 60", {"foo:recorded_rate5m"}),
        ("vector(1)", set()),
    ],
)
def test_metric_names(expr, names):
    assert metric_names(expr) == names


def test_unbalanced_expression_is_an_error():
    with pytest.raises(ValueError, match="unbalanced"):
        metric_names("sum(rate(x{job='a'}[5m]")
    with pytest.raises(ValueError, match="unterminated"):
        metric_names('x{job="a}')


def test_grafana_variable_queries():
    assert grafana_variable_metric_names("label_values(vcfscreen_build_info, namespace)") == {"vcfscreen_build_info"}
    assert grafana_variable_metric_names('label_values(up{job="x"}, instance)') == {"up"}
    assert grafana_variable_metric_names("query_result(topk(5, nv_gpu_utilization))") == {"nv_gpu_utilization"}
    assert grafana_variable_metric_names("label_names()") == set()
