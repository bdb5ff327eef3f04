{{/* Names and labels. */}}
{{- define "bcce.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bcce.fullname" -}}
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

{{- define "bcce.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bcce.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bcce.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "bcce.labels" -}}
helm.sh/chart: {{ include "bcce.chart" . }}
{{ include "bcce.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* A component's name: (dict "root" $ "name" "agent"). */}}
{{- define "bcce.componentName" -}}
{{- printf "%s-%s" (include "bcce.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* A pool's selector labels: (dict "root" $ "name" "agent"). */}}
{{- define "bcce.poolSelectorLabels" -}}
{{ include "bcce.selectorLabels" .root }}
app.kubernetes.io/component: worker
bcce/pool: {{ .name }}
{{- end }}

{{- define "bcce.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bcce.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "bcce.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Redis: where it is, as YAML (scheme, host, port, db, query, tls, username, secret, key). */}}
{{- define "bcce.redis" -}}
{{- $external := .Values.redis.external }}
{{- if $external.url }}
{{- $u := urlParse $external.url }}
{{- if not (has $u.scheme (list "redis" "rediss")) }}
{{- fail (printf "redis.external.url %q: expected redis://HOST:PORT/DB or rediss://HOST:PORT/DB" $external.url) }}
{{- end }}
{{- if $u.userinfo }}
{{- fail "redis.external.url: no credentials in the URL; put the password in a Secret (redis.external.existingSecret) and the user in redis.external.username" }}
{{- end }}
{{- $hostPort := splitList ":" $u.host }}
{{- $port := "6379" }}
{{- if gt (len $hostPort) 1 }}
{{- $port = index $hostPort 1 }}
{{- end }}
{{- $query := $u.query }}
{{- if and (eq $u.scheme "rediss") (not (contains "ssl_cert_reqs=" $query)) }}
{{- $query = trimPrefix "&" (printf "%s&ssl_cert_reqs=required" $query) }}
{{- end }}
scheme: {{ $u.scheme }}
host: {{ index $hostPort 0 | quote }}
port: {{ $port | quote }}
db: {{ default "0" (trimPrefix "/" $u.path) | quote }}
query: {{ $query | quote }}
tls: {{ eq $u.scheme "rediss" }}
username: {{ $external.username | quote }}
secret: {{ $external.existingSecret | quote }}
key: {{ $external.existingSecretPasswordKey | quote }}
{{- else if .Values.redis.bundled.enabled }}
scheme: redis
host: {{ include "bcce.componentName" (dict "root" . "name" "redis") | quote }}
port: "6379"
db: "0"
query: ""
tls: false
username: ""
secret: {{ default (include "bcce.componentName" (dict "root" . "name" "redis")) .Values.redis.bundled.existingSecret | quote }}
key: {{ .Values.redis.bundled.existingSecretPasswordKey | quote }}
{{- else }}
{{- fail "bcce needs Redis: set redis.external.url, or redis.bundled.enabled=true" }}
{{- end }}
{{- end }}

{{/* The broker URL; the password comes from $(REDIS_PASSWORD), set just before it. */}}
{{- define "bcce.brokerUrl" -}}
{{- $r := include "bcce.redis" . | fromYaml }}
{{- $auth := "" }}
{{- if $r.secret }}
{{- $auth = printf "%s:$(REDIS_PASSWORD)@" $r.username }}
{{- else if $r.username }}
{{- $auth = printf "%s@" $r.username }}
{{- end }}
{{- printf "%s://%s%s:%s/%s" $r.scheme $auth $r.host $r.port $r.db }}
{{- if $r.query }}?{{ $r.query }}{{ end }}
{{- end }}

{{/* Env every bcce pod needs to reach Redis. */}}
{{- define "bcce.redisEnv" -}}
{{- $r := include "bcce.redis" . | fromYaml }}
{{- if $r.secret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $r.secret }}
      key: {{ $r.key }}
{{- end }}
{{- if $r.username }}
- name: REDIS_USERNAME
  value: {{ $r.username | quote }}
{{- end }}
- name: BCCE_BROKER_URL
  value: {{ include "bcce.brokerUrl" . | quote }}
{{- end }}

{{/* Writable folders under a read-only root filesystem. */}}
{{- define "bcce.scratchVolumes" -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- end }}

{{- define "bcce.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/bcce
{{- end }}

{{- define "bcce.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "bcce.securityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}

{{/* Egress every bcce pod needs: DNS and Redis. (dict "root" $ "redis" $r "bundled" bool) */}}
{{- define "bcce.egressDnsRedis" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- if .bundled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "bcce.selectorLabels" .root | nindent 10 }}
          app.kubernetes.io/component: redis
  ports:
    - port: 6379
      protocol: TCP
{{- else }}
- to:
    {{- range .root.Values.networkPolicy.redisCIDRs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    - port: {{ .redis.port | int }}
      protocol: TCP
{{- end }}
{{- end }}
