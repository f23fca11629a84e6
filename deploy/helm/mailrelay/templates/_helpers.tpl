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

{{/* "true" when a PostgreSQL database is configured (database.urlSecret.name), else empty. */}}
{{- define "mailrelay.database" -}}
{{- if and .Values.database .Values.database.urlSecret .Values.database.urlSecret.name -}}true{{- end -}}
{{- end -}}

{{/* The workload: a Deployment with a database, a one-pod StatefulSet without. */}}
{{- define "mailrelay.workloadKind" -}}
{{- if include "mailrelay.database" . -}}Deployment{{- else -}}StatefulSet{{- end -}}
{{- end -}}

{{/* The intakes of config.RELAY_INTAKE (default http), trimmed, one list. */}}
{{- define "mailrelay.intakes" -}}
{{- $out := list -}}
{{- range splitList "," (toString (default "http" .Values.config.RELAY_INTAKE)) -}}
{{- $out = append $out (trim .) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* "true" when the HTTP intake (POST /sns) is on: the inbound port, Service and Ingress. */}}
{{- define "mailrelay.httpIntake" -}}
{{- if has "http" (include "mailrelay.intakes" . | fromJsonArray) -}}true{{- end -}}
{{- end -}}

{{/*
The variables the chart derives from other values; config must not set them, so that ports,
volumes and the grace period cannot disagree with the relay's settings, and so that secrets
(the database URL, the admin token) come from Secrets only.
*/}}
{{- define "mailrelay.reservedEnv" -}}
RELAY_LISTEN RELAY_HEALTH_LISTEN RELAY_ADMIN_LISTEN RELAY_SPOOL_DIR RELAY_ALIASES_FILE RELAY_SHUTDOWN_TIMEOUT RELAY_DATABASE_URL RELAY_DATABASE_MIGRATE RELAY_ADMIN_TOKEN
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
{{- fail (printf "config.%s is set by the chart (from ports, persistence, aliases, shutdown, database or admin); remove it from config" $k) -}}
{{- end -}}
{{- if not (hasPrefix "RELAY_" $k) -}}
{{- fail (printf "config.%s: config holds RELAY_* variables only; use extraEnv for others" $k) -}}
{{- end -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- if has .name $reserved -}}
{{- fail (printf "extraEnv sets %s, which the chart sets (from ports, persistence, aliases, shutdown, database or admin); remove it from extraEnv" .name) -}}
{{- end -}}
{{- end -}}
{{- if lt (int .Values.shutdown.graceMarginSeconds) 1 -}}
{{- fail "shutdown.graceMarginSeconds must be at least 1: the kubelet kills the pod when the grace period ends" -}}
{{- end -}}
{{- include "mailrelay.validateIntake" . -}}
{{- include "mailrelay.validateReplicas" . -}}
{{- end -}}

{{/* Fails the render on an intake the relay does not know, and on sqs without a queue. */}}
{{- define "mailrelay.validateIntake" -}}
{{- $intakes := include "mailrelay.intakes" . | fromJsonArray -}}
{{- range $intakes -}}
{{- if not (has . (list "http" "sqs")) -}}
{{- fail (printf "config.RELAY_INTAKE %q: the intakes are http, sqs or http,sqs" (toString $.Values.config.RELAY_INTAKE)) -}}
{{- end -}}
{{- end -}}
{{- if and (has "sqs" $intakes) (not .Values.config.RELAY_SQS_QUEUE_URL) -}}
{{- fail "config.RELAY_INTAKE has sqs: set config.RELAY_SQS_QUEUE_URL to the queue the SNS topic delivers to" -}}
{{- end -}}
{{- end -}}

{{/*
Fails the render on more than one replica without a database, and on values that cannot mean
what they say with one.
*/}}
{{- define "mailrelay.validateReplicas" -}}
{{- if hasKey .Values.database "url" -}}
{{- fail "database.url is not read: put the PostgreSQL URL in a Secret and name it in database.urlSecret.name (and .key)" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail (printf "autoscaling.minReplicas %d is above autoscaling.maxReplicas %d" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- $why := "without a database every acknowledged mail lives on one pod's spool volume, which no other pod reads (a pod scaled in or lost with its volume strands what it acknowledged, and SNS retries landing on another pod are forwarded twice); set database.urlSecret.name to a Secret holding a PostgreSQL URL to run more than one replica" -}}
{{- if not (include "mailrelay.database" .) -}}
{{- if and (not .Values.autoscaling.enabled) (gt (int .Values.replicas) 1) -}}
{{- fail (printf "replicas: %d refused: %s" (int .Values.replicas) $why) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicas) 1) -}}
{{- fail (printf "autoscaling.maxReplicas: %d refused: %s" (int .Values.autoscaling.maxReplicas) $why) -}}
{{- end -}}
{{- else -}}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.egress.databaseTo) -}}
{{- fail "networkPolicy.egress.databaseTo is empty: with a database the relay must reach PostgreSQL; name its peers (e.g. an ipBlock of the database subnets) or disable networkPolicy" -}}
{{- end -}}
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
