{{/*
Names. The operator is one per cluster, so its objects keep the fixed names
config/default gives them, whatever the release is called. Two of them are
also written elsewhere and must not change here alone: the manager's
ClusterRole may update only the MutatingWebhookConfiguration named
apisnoop-mutating-webhook-configuration (resourceNames, generated from the
+kubebuilder:rbac marker into config/rbac/role.yaml and copied into
manager-rbac.yaml), and the manager's defaults name the webhook's Service and
configuration the same way (internal/manager). The manager is still told
both names by flag.
*/}}
{{- define "kube-apisnoop.serviceAccountName" -}}apisnoop-controller-manager{{- end }}
{{- define "kube-apisnoop.webhookServiceName" -}}apisnoop-webhook-service{{- end }}
{{- define "kube-apisnoop.webhookConfigurationName" -}}apisnoop-mutating-webhook-configuration{{- end }}
{{- define "kube-apisnoop.webhookCertificateName" -}}apisnoop-webhook-cert{{- end }}

{{/*
Ports of the manager container, by the names the Services target.
*/}}
{{- define "kube-apisnoop.webhookPort" -}}9443{{- end }}
{{- define "kube-apisnoop.metricsPort" -}}8443{{- end }}
{{- define "kube-apisnoop.probePort" -}}8081{{- end }}

{{/*
Where the manager reads the cert-manager pair from (--webhook-cert-dir).
*/}}
{{- define "kube-apisnoop.webhookCertDir" -}}/var/run/apisnoop/webhook-tls{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "kube-apisnoop.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: kube-apisnoop
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the manager's pods: those of config/default, so that the
Deployment's selector, which cannot change, is the same however the operator
was installed.
*/}}
{{- define "kube-apisnoop.selectorLabels" -}}
app.kubernetes.io/name: kube-apisnoop
app.kubernetes.io/component: manager
{{- end }}

{{/*
The manager's image, and the image injected into recorded pods.
*/}}
{{- define "kube-apisnoop.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "kube-apisnoop.sidecarImage" -}}
{{- $repository := .Values.sidecar.image.repository | default .Values.image.repository }}
{{- $tag := .Values.sidecar.image.tag | default .Values.image.tag | default .Chart.AppVersion }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{/*
Namespaces never injected: the release namespace and webhook.skipNamespaces.
*/}}
{{- define "kube-apisnoop.skippedNamespaces" -}}
{{- concat (list .Release.Namespace) .Values.webhook.skipNamespaces | uniq | toJson }}
{{- end }}
