{{/*
Names, labels and the small decisions every template shares.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "sessiond.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else the release name when it already
contains the chart name, else "<release>-<chart>". At most 63 characters (DNS label); objects
with a suffix trim further.
*/}}
{{- define "sessiond.fullname" -}}
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

{{/* chart label: name-version. */}}
{{- define "sessiond.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "sessiond.labels" -}}
helm.sh/chart: {{ include "sessiond.chart" . }}
{{ include "sessiond.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sessiond
{{- end }}

{{/* Labels that select the pods; never change them in an upgrade (selectors are immutable). */}}
{{- define "sessiond.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sessiond.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount's name. */}}
{{- define "sessiond.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sessiond.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference. */}}
{{- define "sessiond.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding callers.toml, signing-key.pem, pepper and verification keys. */}}
{{- define "sessiond.secretName" -}}
{{- default (include "sessiond.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The Secret and key holding the store URI (store.type=scylla). */}}
{{- define "sessiond.storeSecretName" -}}
{{- default (include "sessiond.fullname" .) .Values.store.scylla.existingSecret }}
{{- end }}
{{- define "sessiond.storeSecretKey" -}}
{{- if .Values.store.scylla.existingSecret }}
{{- .Values.store.scylla.existingSecretKey }}
{{- else -}}
store-uri
{{- end }}
{{- end }}

{{/* The store type, checked. */}}
{{- define "sessiond.storeType" -}}
{{- $t := .Values.store.type }}
{{- if not (has $t (list "scylla" "embedded")) }}
{{- fail (printf "store.type must be scylla or embedded, not %q" $t) }}
{{- end }}
{{- $t }}
{{- end }}

{{/* "true" when more than one replica may run: the shared store is required for that. */}}
{{- define "sessiond.scalable" -}}
{{- if eq (include "sessiond.storeType" .) "scylla" }}true{{ end }}
{{- end }}

{{/* Whether the HorizontalPodAutoscaler is rendered. */}}
{{- define "sessiond.hpaEnabled" -}}
{{- if and .Values.autoscaling.enabled (include "sessiond.scalable" .) }}true{{ end }}
{{- end }}

{{/*
Fails the render when the chart would deploy something that cannot work: no callers (sessiond
refuses to listen on a pod address without them), or a ScyllaDB store with no URI.
*/}}
{{- define "sessiond.validate" -}}
{{- if and (not .Values.secrets.existingSecret) (not .Values.secrets.callers) }}
{{- fail "secrets.callers (or secrets.existingSecret) is required: sessiond refuses to listen on a pod address without callers. Make entries with `sessiond credential --name NAME --roles ROLES` and pass them with --set-file secrets.callers=callers.toml" }}
{{- end }}
{{- if and (eq (include "sessiond.storeType" .) "scylla") (not .Values.store.scylla.existingSecret) }}
{{- if not (hasPrefix "scylla://" .Values.store.scylla.uri) }}
{{- fail "store.scylla.uri must be a scylla:// URI (or set store.scylla.existingSecret)" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The TOML array of retired public key files, one per secrets.verificationKeys entry. */}}
{{- define "sessiond.verificationKeyFiles" -}}
{{- $files := list }}
{{- range $name, $_ := .Values.secrets.verificationKeys }}
{{- $files = append $files (printf "/etc/sessiond/secrets/verification-%s.pem" $name) }}
{{- end }}
{{- toJson $files }}
{{- end }}

{{/* The embedded store's PersistentVolumeClaim. */}}
{{- define "sessiond.dataClaimName" -}}
{{- if .Values.store.embedded.persistence.existingClaim }}
{{- .Values.store.embedded.persistence.existingClaim }}
{{- else }}
{{- include "sessiond.fullname" . | trunc 58 | trimSuffix "-" }}-data
{{- end }}
{{- end }}
