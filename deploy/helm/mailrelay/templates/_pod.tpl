{{/*
The pod template of the workload (StatefulSet or Deployment), indented for spec.template.
With a database the data directory is an emptyDir (it only holds caches); without one it is the
StatefulSet's spool claim.
*/}}
{{- define "mailrelay.podTemplate" -}}
{{- $db := include "mailrelay.database" . -}}
{{- $http := include "mailrelay.httpIntake" . }}
    metadata:
      labels:
        {{- include "mailrelay.selectorLabels" . | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- if and .Values.aliases.rollOnChange (not .Values.aliases.existingConfigMap) }}
        checksum/aliases: {{ toYaml .Values.aliases.content | sha256sum }}
        {{- end }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "mailrelay.serviceAccountName" . }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ include "mailrelay.terminationGracePeriodSeconds" . }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml .Values.podSecurityContext | nindent 8 }}
      containers:
        - name: mailrelay
          image: {{ include "mailrelay.image" . }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          args: [serve]
          ports:
            {{- if $http }}
            - name: inbound
              containerPort: {{ .Values.ports.inbound }}
              protocol: TCP
            {{- end }}
            - name: health
              containerPort: {{ .Values.ports.health }}
              protocol: TCP
          env:
            - name: RELAY_LISTEN
              value: {{ printf "0.0.0.0:%v" .Values.ports.inbound | quote }}
            - name: RELAY_HEALTH_LISTEN
              value: {{ printf "0.0.0.0:%v" .Values.ports.health | quote }}
            - name: RELAY_ADMIN_LISTEN
              value: {{ printf "127.0.0.1:%v" .Values.ports.admin | quote }}
            - name: RELAY_SPOOL_DIR
              value: {{ printf "%s/spool" .Values.persistence.mountPath | quote }}
            - name: RELAY_ALIASES_FILE
              value: {{ printf "%s/aliases.yaml" .Values.aliases.mountPath | quote }}
            - name: RELAY_SHUTDOWN_TIMEOUT
              value: {{ printf "%ds" (int .Values.shutdown.shutdownTimeoutSeconds) | quote }}
            {{- if $db }}
            - name: RELAY_DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: {{ .Values.database.urlSecret.name }}
                  key: {{ default "url" .Values.database.urlSecret.key }}
            - name: RELAY_DATABASE_MIGRATE
              value: {{ ternary "true" "false" (ne (toString .Values.database.migrate) "false") | quote }}
            {{- end }}
            {{- with .Values.admin.tokenSecret.name }}
            - name: RELAY_ADMIN_TOKEN
              valueFrom:
                secretKeyRef:
                  name: {{ . }}
                  key: {{ default "token" $.Values.admin.tokenSecret.key }}
            {{- end }}
            {{- range $k, $v := .Values.config }}
            {{- if ne (toString $v) "" }}
            - name: {{ $k }}
              value: {{ toString $v | quote }}
            {{- end }}
            {{- end }}
            - name: AWS_REGION
              value: {{ .Values.aws.region | quote }}
            - name: GOMEMLIMIT
              {{- if .Values.goMemLimit }}
              value: {{ .Values.goMemLimit | quote }}
              {{- else }}
              valueFrom:
                resourceFieldRef:
                  containerName: mailrelay
                  resource: limits.memory
              {{- end }}
            {{- with .Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with .Values.existingSecret.name }}
          envFrom:
            - secretRef:
                name: {{ . }}
                optional: {{ $.Values.existingSecret.optional }}
          {{- end }}
          # Every probe is on the health listener, never on the inbound port.
          startupProbe:
            httpGet:
              path: /livez
              port: health
            periodSeconds: {{ .Values.probes.startup.periodSeconds }}
            timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
            failureThreshold: {{ .Values.probes.startup.failureThreshold }}
          livenessProbe:
            httpGet:
              path: /livez
              port: health
            periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
            timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
            failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: health
            periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
            timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
            failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
            successThreshold: {{ .Values.probes.readiness.successThreshold }}
          lifecycle:
            # Keep serving while endpoints and the load balancer stop sending, then SIGTERM
            # starts the drain. The sleep action needs no binary (the image has none).
            preStop:
              sleep:
                seconds: {{ .Values.shutdown.preStopSleepSeconds }}
          securityContext:
            {{- toYaml .Values.securityContext | nindent 12 }}
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          volumeMounts:
            - name: {{ ternary "data" "spool" (not (empty $db)) }}
              mountPath: {{ .Values.persistence.mountPath }}
            - name: aliases
              mountPath: {{ .Values.aliases.mountPath }}
              readOnly: true
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: aliases
          configMap:
            name: {{ include "mailrelay.aliasesConfigMap" . }}
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- if $db }}
        # With a database the data directory only holds caches: nothing acknowledged lives here.
        - name: data
          emptyDir:
            sizeLimit: {{ .Values.persistence.emptyDirSizeLimit }}
        {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- range . }}
        - {{ toYaml (merge (dict) . (dict "labelSelector" (dict "matchLabels" (include "mailrelay.selectorLabels" $ | fromYaml)))) | nindent 10 | trim }}
        {{- end }}
      {{- end }}
{{- end -}}
