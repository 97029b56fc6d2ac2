{{/* Names and labels. */}}
{{- define "treaty.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "treaty.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "treaty.labels" -}}
{{ include "treaty.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "treaty.postgres" -}}
{{- if eq .Values.datastore.driver "postgres" }}true{{ end -}}
{{- end -}}

{{- define "treaty.replicas" -}}
{{- if include "treaty.postgres" . }}{{ .Values.replicaCount }}{{ else }}1{{ end -}}
{{- end -}}

{{- define "treaty.onboardingConfigMap" -}}
{{- if .Values.onboarding.files }}{{ include "treaty.fullname" . }}-onboarding{{ else }}{{ .Values.onboarding.existingConfigMap }}{{ end -}}
{{- end -}}

{{/*
Paths inside the pod. data_dir is the volume "data" (a PersistentVolumeClaim
with sqlite); the sockets and the copied secrets are in the memory-backed
volume "run", never in a Service.
*/}}
{{- define "treaty.dataDir" -}}/var/lib/treaty{{- end -}}
{{- define "treaty.runDir" -}}/run/treaty{{- end -}}

{{/* treaty.yaml, built as a dict so that extraConfig merges over it. */}}
{{- define "treaty.config" -}}
{{- $v := .Values -}}
{{- if not $v.trustDomain }}{{ fail "trustDomain is required, e.g. --set trustDomain=example.org" }}{{ end -}}
{{- if not (has $v.datastore.driver (list "sqlite" "postgres")) }}{{ fail "datastore.driver must be sqlite or postgres" }}{{ end -}}
{{- $run := include "treaty.runDir" . -}}
{{- $be := dict "address" (printf "0.0.0.0:%d" (int $v.bundleEndpoint.port)) "profile" $v.bundleEndpoint.profile -}}
{{- with $v.bundleEndpoint.endpointSPIFFEID }}{{ $_ := set $be "endpoint_spiffe_id" . }}{{ end -}}
{{- with $v.bundleEndpoint.refreshHint }}{{ $_ := set $be "refresh_hint" . }}{{ end -}}
{{- if eq $v.bundleEndpoint.profile "https_web" -}}
{{- if not $v.bundleEndpoint.web.secretName }}{{ fail "bundleEndpoint.profile https_web needs bundleEndpoint.web.secretName (a kubernetes.io/tls Secret)" }}{{ end -}}
{{- $_ := set $be "web" (dict "cert_file" "/etc/treaty/web/tls.crt" "key_file" "/etc/treaty/web/tls.key") -}}
{{- else if ne $v.bundleEndpoint.profile "https_spiffe" -}}
{{- fail "bundleEndpoint.profile must be https_spiffe or https_web" -}}
{{- end -}}
{{- $ca := dict "key_type" $v.ca.keyType -}}
{{- with $v.ca.caTTL }}{{ $_ := set $ca "ca_ttl" . }}{{ end -}}
{{- with $v.ca.x509SVIDTTL }}{{ $_ := set $ca "x509_svid_ttl" . }}{{ end -}}
{{- with $v.ca.jwtSVIDTTL }}{{ $_ := set $ca "jwt_svid_ttl" . }}{{ end -}}
{{- $ds := dict "driver" $v.datastore.driver -}}
{{- if include "treaty.postgres" . -}}
{{- if not $v.datastore.dsn }}{{ fail "datastore.driver postgres needs datastore.dsn" }}{{ end -}}
{{- if not $v.ca.sealKeySecret }}{{ fail "datastore.driver postgres needs ca.sealKeySecret: the replicas share the CA keys sealed with it" }}{{ end -}}
{{- if not $v.volumePermissions.enabled }}{{ fail "ca.sealKeySecret and datastore.passwordSecret need volumePermissions.enabled: treaty reads them with mode 0600" }}{{ end -}}
{{- $_ := set $ds "dsn" $v.datastore.dsn -}}
{{- $_ := set $ca "key_seal_file" (printf "%s/seal.key" $run) -}}
{{- with $v.datastore.passwordSecret }}{{ $_ := set $ds "password_file" (printf "%s/db-password" $run) }}{{ end -}}
{{- end -}}
{{- $cfg := dict
  "trust_domain" $v.trustDomain
  "data_dir" (include "treaty.dataDir" .)
  "admin_socket" (printf "%s/private/admin.sock" $run)
  "workload_socket" (printf "%s/public/workload.sock" $run)
  "log_level" $v.logLevel
  "ca" $ca
  "bundle_endpoint" $be
  "telemetry" (dict "address" (printf "0.0.0.0:%d" (int $v.metrics.port)))
  "datastore" $ds -}}
{{- if include "treaty.onboardingConfigMap" . -}}
{{- $fed := dict "onboarding_dir" "/etc/treaty/federation" -}}
{{- with $v.onboarding.className }}{{ $_ := set $fed "class_name" . }}{{ end -}}
{{- $_ := set $cfg "federation" $fed -}}
{{- end -}}
{{- if $v.agentAPI.enabled -}}
{{- $_ := set $cfg "agent_api" (dict "address" (printf "0.0.0.0:%d" (int $v.agentAPI.port))) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy $v.extraConfig)) -}}
{{- end -}}

{{/* The pod template of the StatefulSet (sqlite) or the Deployment (postgres). */}}
{{- define "treaty.podTemplate" -}}
{{- $v := .Values -}}
{{- $run := include "treaty.runDir" . -}}
metadata:
  labels:
    {{- include "treaty.selectorLabels" . | nindent 4 }}
    {{- with $v.podLabels }}{{ toYaml . | nindent 4 }}{{ end }}
  annotations:
    checksum/config: {{ include "treaty.config" . | sha256sum }}
    {{- with $v.podAnnotations }}{{ toYaml . | nindent 4 }}{{ end }}
spec:
  serviceAccountName: {{ include "treaty.fullname" . }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  {{- with $v.imagePullSecrets }}
  imagePullSecrets: {{ toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsUser: 65532
    runAsGroup: 65532
    seccompProfile: {type: RuntimeDefault}
  {{- if $v.volumePermissions.enabled }}
  initContainers:
    - name: volume-permissions
      image: "{{ $v.volumePermissions.image.repository }}:{{ $v.volumePermissions.image.tag }}"
      imagePullPolicy: {{ $v.volumePermissions.image.pullPolicy }}
      command:
        - sh
        - -ec
        - |
          {{- if include "treaty.postgres" . }}
          cp /secrets/seal/seal.key {{ $run }}/seal.key
          {{- if $v.datastore.passwordSecret }}
          cp /secrets/db/password {{ $run }}/db-password
          {{- end }}
          chown 65532:65532 {{ $run }}/*
          chmod 0600 {{ $run }}/*
          {{- end }}
          chown 65532:65532 {{ include "treaty.dataDir" . }} {{ $run }}
          chmod 0700 {{ include "treaty.dataDir" . }} {{ $run }}
      securityContext:
        runAsUser: 0
        runAsGroup: 0
        runAsNonRoot: false
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {drop: [ALL], add: [CHOWN, FOWNER]}
      resources:
        requests: {cpu: 10m, memory: 8Mi}
        limits: {memory: 32Mi}
      volumeMounts:
        - {name: data, mountPath: {{ include "treaty.dataDir" . }}}
        - {name: run, mountPath: {{ $run }}}
        {{- if include "treaty.postgres" . }}
        - {name: seal, mountPath: /secrets/seal, readOnly: true}
        {{- if $v.datastore.passwordSecret }}
        - {name: db, mountPath: /secrets/db, readOnly: true}
        {{- end }}
        {{- end }}
  {{- end }}
  containers:
    - name: treaty
      image: "{{ $v.image.repository }}:{{ $v.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args: [server, run, -config, /etc/treaty/treaty.yaml]
      ports:
        - {name: bundle, containerPort: {{ $v.bundleEndpoint.port }}, protocol: TCP}
        - {name: metrics, containerPort: {{ $v.metrics.port }}, protocol: TCP}
        {{- if $v.agentAPI.enabled }}
        - {name: agent, containerPort: {{ $v.agentAPI.port }}, protocol: TCP}
        {{- end }}
      startupProbe:
        httpGet: {path: /healthz, port: metrics}
        periodSeconds: 2
        failureThreshold: 60
      livenessProbe:
        httpGet: {path: /healthz, port: metrics}
        periodSeconds: 10
        failureThreshold: 3
      readinessProbe:
        httpGet: {path: {{ $v.probes.readinessPath }}, port: metrics}
        periodSeconds: 5
        failureThreshold: 2
      securityContext:
        runAsNonRoot: true
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {drop: [ALL]}
      {{- with $v.resources }}
      resources: {{ toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - {name: config, mountPath: /etc/treaty/treaty.yaml, subPath: treaty.yaml, readOnly: true}
        - {name: data, mountPath: {{ include "treaty.dataDir" . }}}
        - {name: run, mountPath: {{ $run }}}
        - {name: tmp, mountPath: /tmp}
        {{- if include "treaty.onboardingConfigMap" . }}
        - {name: onboarding, mountPath: /etc/treaty/federation, readOnly: true}
        {{- end }}
        {{- if eq $v.bundleEndpoint.profile "https_web" }}
        - {name: web, mountPath: /etc/treaty/web, readOnly: true}
        {{- end }}
  volumes:
    - name: config
      configMap: {name: {{ include "treaty.fullname" . }}}
    - name: run
      emptyDir: {medium: Memory, sizeLimit: 16Mi}
    - name: tmp
      emptyDir: {sizeLimit: 64Mi}
    {{- if include "treaty.postgres" . }}
    - name: data
      emptyDir: {sizeLimit: 256Mi}
    - name: seal
      secret: {secretName: {{ $v.ca.sealKeySecret }}, defaultMode: 0400, items: [{key: seal.key, path: seal.key}]}
    {{- if $v.datastore.passwordSecret }}
    - name: db
      secret: {secretName: {{ $v.datastore.passwordSecret }}, defaultMode: 0400, items: [{key: password, path: password}]}
    {{- end }}
    {{- end }}
    {{- if include "treaty.onboardingConfigMap" . }}
    - name: onboarding
      configMap: {name: {{ include "treaty.onboardingConfigMap" . }}}
    {{- end }}
    {{- if eq $v.bundleEndpoint.profile "https_web" }}
    - name: web
      secret: {secretName: {{ $v.bundleEndpoint.web.secretName }}, defaultMode: 0444}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector: {{ toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations: {{ toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity: {{ toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
