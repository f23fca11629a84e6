{{/* Name of the chart, overridable. */}}
{{- define "mailrelay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release-chart unless the release name already contains the chart name. */}}
{{- define "mailrelay.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The headless Service governing the StatefulSet; also the metrics target. */}}
{{- define "mailrelay.headlessName" -}}
{{- printf "%s-headless" (include "mailrelay.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mailrelay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailrelay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mailrelay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mailrelay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "mailrelay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mailrelay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mailrelay.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "mailrelay.aliasesConfigMap" -}}
{{- default (printf "%s-aliases" (include "mailrelay.fullname" .)) .Values.aliases.existingConfigMap -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: preStop sleep + the relay's drain + a margin. */}}
{{- define "mailrelay.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown -}}
{{- add (int $s.preStopSleepSeconds) (int $s.shutdownTimeoutSeconds) (int $s.graceMarginSeconds) -}}
{{- end -}}

{{/*
The variables the chart derives from other values; config must not set them, so that ports,
volumes and the grace period cannot disagree with the relay's settings.
*/}}
{{- define "mailrelay.reservedEnv" -}}
RELAY_LISTEN RELAY_HEALTH_LISTEN RELAY_ADMIN_LISTEN RELAY_SPOOL_DIR RELAY_ALIASES_FILE RELAY_SHUTDOWN_TIMEOUT
{{- end -}}

{{/* Fails the render on missing required values and on config that the chart owns. */}}
{{- define "mailrelay.validate" -}}
{{- if not .Values.config.RELAY_SNS_TOPIC_ARNS -}}
{{- fail "config.RELAY_SNS_TOPIC_ARNS is required: the SNS topic ARN(s) allowed to deliver (terraform output sns_topic_arn)" -}}
{{- end -}}
{{- if not .Values.aws.region -}}
{{- fail "aws.region is required (AWS_REGION of the relay)" -}}
{{- end -}}
{{- $reserved := splitList " " (include "mailrelay.reservedEnv" .) -}}
{{- range $k, $v := .Values.config -}}
{{- if has $k $reserved -}}
{{- fail (printf "config.%s is set by the chart (from ports, persistence, aliases or shutdown); remove it from config" $k) -}}
{{- end -}}
{{- if not (hasPrefix "RELAY_" $k) -}}
{{- fail (printf "config.%s: config holds RELAY_* variables only; use extraEnv for others" $k) -}}
{{- end -}}
{{- end -}}
{{- if lt (int .Values.shutdown.graceMarginSeconds) 1 -}}
{{- fail "shutdown.graceMarginSeconds must be at least 1: the kubelet kills the pod when the grace period ends" -}}
{{- end -}}
{{- end -}}

{{/*
Fails the render on a NetworkPolicy egress that would be open by accident: keys of the
former layout (their rules would silently disappear), DNS to every address, and HTTPS to
every address without allowAllHTTPS.
*/}}
{{- define "mailrelay.validateNetworkPolicy" -}}
{{- range $old, $new := dict "httpsTo" "networkPolicy.egress.httpsCIDRs (a list of CIDRs)" "dnsTo" "networkPolicy.egress.dnsTo" "extraEgress" "networkPolicy.egress.extra" -}}
{{- if hasKey $.Values.networkPolicy $old -}}
{{- fail (printf "networkPolicy.%s has moved to %s" $old $new) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.networkPolicy.egress.dnsTo -}}
{{- fail "networkPolicy.egress.dnsTo is empty: name the cluster DNS (an empty peer list would allow port 53 to every address)" -}}
{{- end -}}
{{- range .Values.networkPolicy.egress.httpsCIDRs -}}
{{- if or (eq . "0.0.0.0/0") (eq . "::/0") -}}
{{- if not $.Values.networkPolicy.egress.allowAllHTTPS -}}
{{- fail (printf "networkPolicy.egress.httpsCIDRs has %s: set networkPolicy.egress.allowAllHTTPS=true to allow HTTPS to every address" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
