{{- define "keplor-agent.name" -}}{{ .Chart.Name }}{{- end -}}
{{- define "keplor-agent.labels" -}}
app.kubernetes.io/name: {{ include "keplor-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "keplor-agent.selector" -}}
app.kubernetes.io/name: {{ include "keplor-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
