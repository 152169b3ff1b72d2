{{/* Label matchers and PromQL shared by the alert rules and Triton's scaling. The ServiceMonitors
set job to the Service name, so these match this release only. */}}
{{- define "vcfscreen.workerMatchers" -}}
job="{{ include "vcfscreen.workerName" . }}",namespace="{{ .Release.Namespace }}"
{{- end -}}
{{- define "vcfscreen.tritonMatchers" -}}
job="{{ include "vcfscreen.tritonName" . }}",namespace="{{ .Release.Namespace }}"
{{- end -}}

{{/* Average microseconds a request waited in Triton's queue over the last 2 minutes, for the
busiest model; 0 when idle. */}}
{{- define "vcfscreen.tritonQueueQuery" -}}
{{- $t := include "vcfscreen.tritonMatchers" . -}}
max(sum by (model) (rate(nv_inference_queue_duration_us{ {{- $t -}} }[2m])) / clamp_min(sum by (model) (rate(nv_inference_request_success{ {{- $t -}} }[2m])), 0.001))
{{- end -}}
