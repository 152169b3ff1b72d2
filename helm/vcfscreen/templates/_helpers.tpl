{{/* Names, labels, and the checks every template relies on. */}}

{{- define "vcfscreen.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vcfscreen.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vcfscreen.workerName" -}}{{ include "vcfscreen.fullname" . }}-worker{{- end -}}
{{- define "vcfscreen.tritonName" -}}{{ include "vcfscreen.fullname" . }}-triton{{- end -}}

{{- define "vcfscreen.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vcfscreen.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vcfscreen.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "vcfscreen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vcfscreen
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include with (dict "root" $ "component" "worker"). */}}
{{- define "vcfscreen.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vcfscreen.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vcfscreen.componentLabels" -}}
{{ include "vcfscreen.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vcfscreen.workerImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The most workers that can ever run: more than the studies topic's partitions would leave
consumers idle, so any replica count above kafka.partitions is refused here.
*/}}
{{- define "vcfscreen.workerMaxReplicas" -}}
{{- $partitions := int .Values.kafka.partitions -}}
{{- if lt $partitions 1 -}}
{{- fail (printf "kafka.partitions is %d: set it to the partition count of the topic %s (at least 1)" $partitions .Values.kafka.studiesTopic) -}}
{{- end -}}
{{- $max := int .Values.worker.autoscaling.maxReplicas -}}
{{- if eq $max 0 -}}{{- $max = $partitions -}}{{- end -}}
{{- if gt $max $partitions -}}
{{- fail (printf "worker.autoscaling.maxReplicas is %d but the topic %s has kafka.partitions=%d: a worker beyond the partition count gets no partition and sits idle; lower maxReplicas or add partitions" $max .Values.kafka.studiesTopic $partitions) -}}
{{- end -}}
{{- if gt (int .Values.worker.autoscaling.minReplicas) $max -}}
{{- fail (printf "worker.autoscaling.minReplicas %d is above the most workers allowed (%d)" (int .Values.worker.autoscaling.minReplicas) $max) -}}
{{- end -}}
{{- if gt (int .Values.worker.replicas) $partitions -}}
{{- fail (printf "worker.replicas is %d but the topic %s has kafka.partitions=%d: lower replicas or add partitions" (int .Values.worker.replicas) .Values.kafka.studiesTopic $partitions) -}}
{{- end -}}
{{- $max -}}
{{- end -}}

{{/* SIGKILL must come after the worker's own drain deadline, or in-flight studies are lost. */}}
{{- define "vcfscreen.workerTerminationGrace" -}}
{{- $drain := .Values.worker.drainGraceSeconds | float64 -}}
{{- $grace := int .Values.worker.terminationGracePeriodSeconds -}}
{{- if eq $grace 0 -}}{{- $grace = add (int (ceil $drain)) 30 -}}{{- end -}}
{{- if le ($grace | float64) $drain -}}
{{- fail (printf "worker.terminationGracePeriodSeconds %d must be greater than worker.drainGraceSeconds %v, or Kubernetes kills workers still draining" $grace .Values.worker.drainGraceSeconds) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}

{{- define "vcfscreen.modelsBackend" -}}
{{- if .Values.models.backend -}}
{{- .Values.models.backend -}}
{{- else if .Values.triton.enabled -}}
triton
{{- else -}}
onnxruntime
{{- end -}}
{{- end -}}

{{/* A value as the worker's settings parse it from the environment: lists and maps as JSON,
whole numbers without an exponent (YAML numbers arrive here as float64). */}}
{{- define "vcfscreen.envValue" -}}
{{- if or (kindIs "slice" .) (kindIs "map" .) -}}
{{- toJson . -}}
{{- else if and (kindIs "float64" .) (eq (floor .) .) -}}
{{- printf "%d" (int64 .) -}}
{{- else if kindIs "invalid" . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* The container securityContext shared by every container of the chart. */}}
{{- define "vcfscreen.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
