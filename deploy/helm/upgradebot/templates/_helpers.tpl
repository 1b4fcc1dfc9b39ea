{{/* The chart's name, and the release's full name (63 characters at most). */}}
{{- define "upgradebot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "upgradebot.fullname" -}}
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

{{- define "upgradebot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "upgradebot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "upgradebot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "upgradebot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "upgradebot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "upgradebot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "upgradebot.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* More than one replica can run: a PodDisruptionBudget then keeps one up. */}}
{{- define "upgradebot.multiReplica" -}}
{{- if and (not .Values.sandbox) (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}true{{ end }}
{{- end }}

{{/*
The chart's own Secret holds whatever secret the values carry. Its name is not
the release's: README has the tenant create a Secret named like the release.
*/}}
{{- define "upgradebot.secretName" -}}
{{- include "upgradebot.fullname" . }}-secrets
{{- end }}

{{- define "upgradebot.ownSecret" -}}
{{- if or (and (not .Values.secrets.existingSecret) (or .Values.secrets.MicrosoftAppPassword .Values.secrets.MicrosoftAppCertificatePassword)) (and .Values.redis.url (not .Values.redis.existingSecret)) }}true{{ end }}
{{- end }}

{{/*
GOMEMLIMIT: 90% of the memory limit, so the Go runtime collects harder
before the kernel kills the pod. The schema allows the limit only in Mi or Gi.
*/}}
{{- define "upgradebot.gomemlimit" -}}
{{- $limit := toString .Values.resources.limits.memory }}
{{- $mib := 0 }}
{{- if hasSuffix "Gi" $limit }}
{{- $mib = mul (trimSuffix "Gi" $limit | int) 1024 }}
{{- else }}
{{- $mib = trimSuffix "Mi" $limit | int }}
{{- end }}
{{- printf "%dMiB" (div (mul $mib 9) 10) }}
{{- end }}

{{/* The bot's environment: the Deployment's and the helm test pod's. */}}
{{- define "upgradebot.env" -}}
- name: PORT
  value: {{ .Values.ports.http | quote }}
{{- if not .Values.sandbox }}
- name: OPS_PORT
  value: {{ .Values.ports.ops | quote }}
{{- end }}
{{- range $name, $value := .Values.config }}
{{- if ne (toString $value) "" }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- $secret := .Values.secrets.existingSecret | default (include "upgradebot.secretName" .) }}
{{- if or .Values.secrets.existingSecret .Values.secrets.MicrosoftAppPassword }}
- name: MicrosoftAppPassword
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: MicrosoftAppPassword
      optional: {{ not .Values.secrets.MicrosoftAppPassword }}
{{- end }}
{{- if or .Values.secrets.existingSecret .Values.secrets.MicrosoftAppCertificatePassword }}
- name: MicrosoftAppCertificatePassword
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: MicrosoftAppCertificatePassword
      optional: {{ not .Values.secrets.MicrosoftAppCertificatePassword }}
{{- end }}
{{- if .Values.certificate.existingSecret }}
- name: MicrosoftAppCertificatePath
  value: /var/run/secrets/upgradebot/certificate/{{ .Values.certificate.key }}
{{- end }}
{{- if .Values.redis.existingSecret }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.existingSecretKey }}
{{- else if .Values.redis.url }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "upgradebot.secretName" . }}
      key: REDIS_URL
{{- else if .Values.devRedis.enabled }}
- name: REDIS_URL
  value: redis://{{ include "upgradebot.fullname" . }}-dev-redis:6379/0
{{- end }}
- name: GOMEMLIMIT
  value: {{ include "upgradebot.gomemlimit" . | quote }}
{{- end }}

{{- define "upgradebot.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "upgradebot.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end }}

{{- define "upgradebot.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.certificate.existingSecret }}
- name: certificate
  mountPath: /var/run/secrets/upgradebot/certificate
  readOnly: true
{{- end }}
{{- end }}

{{- define "upgradebot.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 16Mi
{{- if .Values.certificate.existingSecret }}
- name: certificate
  secret:
    secretName: {{ .Values.certificate.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}
