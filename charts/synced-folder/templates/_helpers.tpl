{{/*
Object names are fixed: the manager finds its webhook Service, Secret and configuration by
these names (they match config/ for kustomize users), and the operator is cluster-wide.
*/}}
{{- define "synced-folder.prefix" -}}synced-folder{{- end }}
{{- define "synced-folder.serviceAccountName" -}}synced-folder-controller-manager{{- end }}
{{- define "synced-folder.webhookServiceName" -}}synced-folder-webhook-service{{- end }}
{{- define "synced-folder.webhookSecretName" -}}synced-folder-webhook-server-cert{{- end }}
{{- define "synced-folder.webhookConfigName" -}}synced-folder-mutating-webhook-configuration{{- end }}
{{- define "synced-folder.certificateName" -}}synced-folder-serving-cert{{- end }}

{{/* The operator image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "synced-folder.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "synced-folder.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: synced-folder
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: synced-folder
{{- end }}

{{/* Labels that select the manager pods (control-plane is the contract with the operator's NetworkPolicies). */}}
{{- define "synced-folder.selectorLabels" -}}
control-plane: controller-manager
app.kubernetes.io/name: synced-folder
{{- end }}
