{{- define "renderfarm.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "renderfarm.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "renderfarm.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "renderfarm.serviceAccountName" -}}
{{- default (include "renderfarm.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "renderfarm.storageNamespace" -}}
{{- default .Release.Namespace .Values.storage.namespace -}}
{{- end -}}

{{- /* Namespaces RenderJobs run in, as a JSON list: batchNetworkPolicy.namespaces, else
watchNamespace, else jobPolicy.namespaces, else the storage claim's namespace. */ -}}
{{- define "renderfarm.renderNamespaces" -}}
{{- $v := .Values -}}
{{- if $v.batchNetworkPolicy.namespaces -}}
{{- toJson $v.batchNetworkPolicy.namespaces -}}
{{- else if $v.watchNamespace -}}
{{- list $v.watchNamespace | toJson -}}
{{- else if $v.jobPolicy.namespaces -}}
{{- toJson $v.jobPolicy.namespaces -}}
{{- else -}}
{{- list (include "renderfarm.storageNamespace" .) | toJson -}}
{{- end -}}
{{- end -}}
