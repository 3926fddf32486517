{{/*
Labels of every object: the kustomize install's (name, part-of) and Helm's.
Call with (dict "root" $ "name" "krm-agent").
*/}}
{{- define "krm.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: krm
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ include "krm.tag" .root | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | quote }}
{{- end }}

{{- define "krm.tag" -}}
{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "krm.image" -}}
{{ .Values.image.repository }}:{{ include "krm.tag" . }}
{{- end }}

{{/* The container securityContext every container of the chart has. */}}
{{- define "krm.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* --resources: plural for the core group, plural.group otherwise. */}}
{{- define "krm.resourcesArg" -}}
{{- $names := list -}}
{{- range .Values.watch -}}
{{- if .group -}}
{{- $names = append $names (printf "%s.%s" .resource .group) -}}
{{- else -}}
{{- $names = append $names .resource -}}
{{- end -}}
{{- end -}}
{{ join "," $names }}
{{- end }}

{{/* Whether the agent uses Redis, and the Secret and key of its password. */}}
{{- define "krm.redisEnabled" -}}
{{- if eq .Values.store.type "redis" }}true{{ end -}}
{{- end }}

{{- define "krm.redisBundled" -}}
{{- if and (eq .Values.store.type "redis") (eq .Values.redis.mode "bundled") }}true{{ end -}}
{{- end }}

{{- define "krm.redisSecret" -}}
{{- if .Values.redis.auth.existingSecret -}}
{{ .Values.redis.auth.existingSecret }}
{{- else if eq .Values.redis.mode "bundled" -}}
krm-redis
{{- end -}}
{{- end }}

{{- define "krm.influxBundled" -}}
{{- if and .Values.influxdb.enabled .Values.influxdb.bundled }}true{{ end -}}
{{- end }}

{{- define "krm.influxSecret" -}}
{{- if .Values.influxdb.auth.existingSecret -}}
{{ .Values.influxdb.auth.existingSecret }}
{{- else if .Values.influxdb.bundled -}}
krm-influxdb
{{- end -}}
{{- end }}

{{/*
A password generated once: the one already in the Secret's key if the
Secret exists (lookup), else a new one. lookup finds nothing under
`helm template` and client-side dry runs, so a render there shows a fresh
password that is never applied by an upgrade. Call with
(dict "root" $ "secret" "krm-redis" "key" "password").
*/}}
{{- define "krm.password" -}}
{{- $s := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $s $s.data (hasKey $s.data .key) -}}
{{ index $s.data .key | b64dec }}
{{- else -}}
{{ randAlphaNum 43 }}
{{- end -}}
{{- end }}

{{/* Checks the values cannot express in the schema. */}}
{{- define "krm.validate" -}}
{{- if and .Values.ha.enabled (ne .Values.store.type "redis") -}}
{{ fail "ha.enabled needs store.type redis: the replicas share what the leader writes there" }}
{{- end -}}
{{- if eq .Values.store.type "redis" -}}
{{- if and (eq .Values.redis.mode "url") (not .Values.redis.url) -}}
{{ fail "redis.mode url needs redis.url (redis://host:6379/0)" }}
{{- end -}}
{{- if and (has .Values.redis.mode (list "sentinel" "cluster")) (not .Values.redis.addrs) -}}
{{ fail (printf "redis.mode %s needs redis.addrs (host:port of each %s)" .Values.redis.mode (ternary "Sentinel" "seed node" (eq .Values.redis.mode "sentinel"))) }}
{{- end -}}
{{- if and (eq .Values.redis.mode "sentinel") (not .Values.redis.sentinelMaster) -}}
{{ fail "redis.mode sentinel needs redis.sentinelMaster, the name of the master the Sentinels monitor" }}
{{- end -}}
{{- end -}}
{{- if and .Values.influxdb.enabled (not .Values.influxdb.bundled) (not .Values.influxdb.url) -}}
{{ fail "influxdb.bundled false needs influxdb.url, the InfluxDB to write to" }}
{{- end -}}
{{- if not .Values.watch -}}
{{ fail "watch is empty: list at least one resource for the agent to watch" }}
{{- end -}}
{{- end }}
