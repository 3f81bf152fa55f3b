{{- define "keplor-agent.name" -}}{{ .Chart.Name }}{{- end -}}

{{- define "keplor-agent.labels" -}}
app.kubernetes.io/name: {{ include "keplor-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "keplor-agent.selector" -}}
app.kubernetes.io/name: {{ include "keplor-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "keplor-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default .Release.Name }}
{{- else -}}
{{ .Values.serviceAccount.name | default "default" }}
{{- end -}}
{{- end -}}

{{- define "keplor-agent.image" -}}
{{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end -}}

{{/* The agent configuration: values.config, or files/agent.toml. */}}
{{- define "keplor-agent.config" -}}
{{- if .Values.config }}{{ .Values.config }}{{ else }}{{ .Files.Get "files/agent.toml" }}{{ end -}}
{{- end -}}

{{/* The headless Service's DNS name and port: the fleet's members. */}}
{{- define "keplor-agent.fleetDns" -}}
{{ printf "%s.%s.svc.%s:%d" .Release.Name .Release.Namespace .Values.clusterDomain (int .Values.service.port) }}
{{- end -}}

{{/* The Secret key selector holding the token /metrics needs, as JSON ({} when none). */}}
{{- define "keplor-agent.metricsTokenSecret" -}}
{{- $sm := .Values.serviceMonitor.bearerTokenSecret | default dict -}}
{{- if $sm.name -}}
{{ dict "name" $sm.name "key" ($sm.key | default "token") | toJson }}
{{- else if .Values.auth.existingSecret -}}
{{ dict "name" .Values.auth.existingSecret "key" .Values.auth.secretKey | toJson }}
{{- else -}}
{}
{{- end -}}
{{- end -}}

{{/*
A duration of the agent's syntax ("30s", "1.5m", "500ms") in whole seconds, rounded up; -1 when
it cannot be read here (the agent's own check-config is the authority).
*/}}
{{- define "keplor-agent.durationSeconds" -}}
{{- $d := toString . | trim -}}
{{- $m := regexFindAll "^([0-9]+(\\.[0-9]+)?) ?(ns|us|µs|ms|s|m|min|h|d)$" $d 1 -}}
{{- if not $m -}}
-1
{{- else -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $d | float64 -}}
{{- $unit := regexReplaceAll "^[0-9]+(\\.[0-9]+)? ?" $d "" -}}
{{- $mult := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "min" 60.0 "h" 3600.0 "d" 86400.0 -}}
{{- mulf $num (get $mult $unit) | ceil | int -}}
{{- end -}}
{{- end -}}
