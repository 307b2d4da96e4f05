{{/* Labels every object of the chart carries; the selectors use the name alone, as deploy/daemonset. */}}
{{- define "ambit.labels" -}}
app.kubernetes.io/name: ambit
{{ include "ambit.releaseLabels" . }}
{{- end }}

{{/* The CA's (templates/ca.yaml): its own name, so that neither selector picks the other's pods. */}}
{{- define "ambit-ca.labels" -}}
app.kubernetes.io/name: ambit-ca
{{ include "ambit.releaseLabels" . }}
{{- end }}

{{- define "ambit.releaseLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "ambit.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
