{{/*
The chart's object names are the product's names, the same as manifests/
gives them, so that docs/troubleshooting.md and `kubectl` commands read the
same for both installs. The webhook is a cluster singleton (its CRDs and
webhook configuration are cluster-scoped), so a release name adds nothing.
Namespaced objects are pod-identity-webhook; cluster-scoped ones are
pod-identity-injector, because the EKS pod identity webhook names its own
pod-identity-webhook and one install would overwrite the other.
*/}}
{{- define "pii.name" -}}pod-identity-webhook{{- end }}
{{- define "pii.clusterName" -}}pod-identity-injector{{- end }}
{{- define "pii.caName" -}}pod-identity-webhook-ca{{- end }}
{{/*
Without cert-manager, the Secret and the CA that signed it are the user's;
JSON Schema cannot say "required when" in words, so the template does.
*/}}
{{- define "pii.checkTLS" -}}
{{- if and (not .Values.certManager.enabled) (or (not .Values.tls.secretName) (not .Values.tls.caBundle)) -}}
{{- fail "certManager.enabled is false, so set tls.secretName (a kubernetes.io/tls Secret in the release namespace for pod-identity-webhook.<namespace>.svc) and tls.caBundle (base64 of the PEM CA that signed it); see docs/install.md, TLS without cert-manager" -}}
{{- end -}}
{{- end }}

{{/*
A PodDisruptionBudget that keeps every replica lets no webhook pod be
evicted: node drains, and so AKS node image upgrades, wait for it forever.
A percentage is rounded up, as the disruption controller does for
minAvailable.
*/}}
{{- define "pii.checkPDB" -}}
{{- $replicas := int .Values.replicaCount -}}
{{- $min := .Values.podDisruptionBudget.minAvailable -}}
{{- $kept := 0 -}}
{{- if kindIs "string" $min -}}
{{- $kept = div (add (mul $replicas (trimSuffix "%" $min | atoi)) 99) 100 -}}
{{- else -}}
{{- $kept = int $min -}}
{{- end -}}
{{- if and (gt $kept 0) (ge $kept $replicas) -}}
{{- fail (printf "replicaCount is %d and podDisruptionBudget.minAvailable is %v, so the PodDisruptionBudget lets no webhook pod be evicted, which blocks node drains and AKS upgrades; set replicaCount to 2 or more (with failurePolicy Fail, the default, keep at least 2), lower podDisruptionBudget.minAvailable below replicaCount, or set podDisruptionBudget.enabled=false" $replicas $min) -}}
{{- end -}}
{{- end }}

{{- define "pii.servingSecret" -}}
{{- if .Values.certManager.enabled }}pod-identity-webhook-tls{{ else }}{{ .Values.tls.secretName }}{{ end }}
{{- end }}

{{/* Selector labels: those of manifests/, so that both installs match the same pods. */}}
{{- define "pii.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pii.name" . }}
{{- end }}

{{/* Labels on every object the chart templates. */}}
{{- define "pii.labels" -}}
{{ include "pii.selectorLabels" . }}
{{ include "pii.releaseLabels" . }}
{{- end }}

{{/* The labels of objects that belong to the product but not to the webhook, such as the users' roles. */}}
{{- define "pii.releaseLabels" -}}
app.kubernetes.io/part-of: pod-identity
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: pinned by digest when one
is given, else the tag, else the chart's appVersion.
Call as: include "pii.image" (dict "image" .Values.image "root" .)
*/}}
{{- define "pii.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* The namespaces the webhook configuration never matches: the user's list and the release namespace. */}}
{{- define "pii.excludedNamespaces" -}}
{{- $ns := .Values.namespaceSelection.excludedNamespaces | default list -}}
{{- if not (has .Release.Namespace $ns) }}{{ $ns = append $ns .Release.Namespace }}{{ end -}}
{{ toJson $ns }}
{{- end }}

{{/* HTTPS metrics: verify the serving certificate with the CA cert-manager
stores beside it; a Secret you supply may hold no ca.crt, so then the
bearer token alone is what the endpoint checks. */}}
{{- define "pii.metricsTLS" -}}
{{- if .Values.metrics.secure }}
scheme: https
tlsConfig:
  {{- if .Values.certManager.enabled }}
  serverName: {{ include "pii.name" . }}.{{ .Release.Namespace }}.svc
  ca:
    secret:
      name: {{ include "pii.servingSecret" . }}
      key: ca.crt
  {{- else }}
  insecureSkipVerify: true
  {{- end }}
{{- end }}
{{- end }}
