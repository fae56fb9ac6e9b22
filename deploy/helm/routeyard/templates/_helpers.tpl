{{/* Names, labels and the pieces several templates share. */}}

{{- define "routeyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: <release>-routeyard, or the release name when it already says so. */}}
{{- define "routeyard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "routeyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels never change after the first install: a Deployment's selector is immutable. */}}
{{- define "routeyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "routeyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "routeyard.labels" -}}
helm.sh/chart: {{ include "routeyard.chart" . }}
{{ include "routeyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "routeyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "routeyard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret the pods take their environment from: yours (existingSecret) or the chart's. */}}
{{- define "routeyard.secretName" -}}
{{- default (include "routeyard.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "routeyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The Routeyard config: the user's `config`, with the chart's `state` (PostgreSQL durable, Redis
hot, URLs from the Secret's environment) and shutdown timings filled in. The chart owns those
keys so that the ConfigMap, the Secret and the pod's grace period cannot disagree.
*/}}
{{- define "routeyard.config" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- $server := get $config "server" | default dict }}
{{- range $key := list "drain_delay_s" "shutdown_grace_s" }}
{{- if hasKey $server $key }}
{{- fail (printf "config.server.%s: set shutdown.drainDelaySeconds / shutdown.shutdownGraceSeconds instead (the pod's grace period is computed from them)" $key) }}
{{- end }}
{{- end }}
{{- $_ := set $server "drain_delay_s" .Values.shutdown.drainDelaySeconds }}
{{- $_ = set $server "shutdown_grace_s" .Values.shutdown.shutdownGraceSeconds }}
{{- $_ = set $config "server" $server }}
{{- $state := get $config "state" | default dict }}
{{- range $key := list "backend" "postgres_url" "redis_url" "path" }}
{{- if hasKey $state $key }}
{{- fail (printf "config.state.%s: the chart sets it (backend postgres; the URLs come from the Secret: state.postgresUrl, state.redisUrl or existingSecret)" $key) }}
{{- end }}
{{- end }}
{{- $_ = set $state "backend" "postgres" }}
{{- $_ = set $state "postgres_url" "${ROUTEYARD_POSTGRES_URL}" }}
{{- $_ = set $state "redis_url" "${ROUTEYARD_REDIS_URL}" }}
{{- $_ = set $config "state" $state }}
{{- toYaml $config }}
{{- end }}

{{/*
terminationGracePeriodSeconds: above drain_delay_s + shutdown_grace_s, or the kubelet would
SIGKILL a replica that is still finishing streams.
*/}}
{{- define "routeyard.terminationGracePeriodSeconds" -}}
{{- $shutdown := .Values.shutdown }}
{{- $needed := addf $shutdown.drainDelaySeconds $shutdown.shutdownGraceSeconds }}
{{- $grace := int (ceil (addf $needed $shutdown.killMarginSeconds)) }}
{{- if not (kindIs "invalid" $shutdown.terminationGracePeriodSeconds) }}
{{- $grace = int $shutdown.terminationGracePeriodSeconds }}
{{- end }}
{{- if le (float64 $grace) (float64 $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above shutdown.drainDelaySeconds + shutdown.shutdownGraceSeconds (%v), or Kubernetes kills replicas still draining" $grace $needed) }}
{{- end }}
{{- $grace }}
{{- end }}

{{/* Environment of the server and the migration: plain env, then the Secret's keys. */}}
{{- define "routeyard.podEnv" -}}
envFrom:
  - secretRef:
      name: {{ include "routeyard.secretName" . }}
{{- with .Values.env }}
env:
  {{- range $key, $value := . }}
  - name: {{ $key }}
    value: {{ $value | toString | quote }}
  {{- end }}
{{- end }}
{{- end }}

{{- define "routeyard.volumeMounts" -}}
- name: config
  mountPath: /etc/routeyard
  readOnly: true
- name: tmp
  mountPath: /tmp
- name: state
  mountPath: /var/lib/routeyard
{{- end }}
