{{/* Names ------------------------------------------------------------------------------- */}}

{{- define "attestgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "attestgate.fullname" -}}
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

{{- define "attestgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "attestgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "attestgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "attestgate.labels" -}}
helm.sh/chart: {{ include "attestgate.chart" . }}
{{ include "attestgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/part-of: attestgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "attestgate.serviceAccountName" -}}
{{- default (include "attestgate.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "attestgate.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "attestgate.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/* The serving certificate's cert-manager Certificate, whose CA the injector copies. */}}
{{- define "attestgate.servingCertificateName" -}}
{{- printf "%s-serving" (include "attestgate.fullname" .) }}
{{- end }}

{{/* repository@sha256:..., never a tag. The schema checks the shapes; this refuses empties. */}}
{{- define "attestgate.image" -}}
{{- $repository := required "image.repository is required" .Values.image.repository }}
{{- $digest := required "image.digest is required: the image is pinned by digest (sha256:<64 hex>), never by tag" .Values.image.digest }}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" $digest) }}
{{- fail (printf "image.digest %q is not sha256:<64 lower-case hex>: the image is pinned by digest, never by tag" $digest) }}
{{- end }}
{{- if regexMatch "[@]|:[^/]*$" $repository }}
{{- fail (printf "image.repository %q carries a tag or digest: give the repository alone and the digest in image.digest" $repository) }}
{{- end }}
{{- printf "%s@%s" $repository $digest }}
{{- end }}

{{/* Units ------------------------------------------------------------------------------- */}}

{{/*
A config duration (500ms, 8s, 1.5s, 5m, 1h, or a bare number of seconds) in whole milliseconds,
parsed as the server parses it (src/config/units.rs).
*/}}
{{- define "attestgate.durationMillis" -}}
{{- $text := trim (toString .value) }}
{{- $number := $text }}
{{- $scale := 1000.0 }}
{{- if hasSuffix "ms" $text }}
{{- $number = trimSuffix "ms" $text }}{{- $scale = 1.0 }}
{{- else if hasSuffix "s" $text }}
{{- $number = trimSuffix "s" $text }}
{{- else if hasSuffix "m" $text }}
{{- $number = trimSuffix "m" $text }}{{- $scale = 60000.0 }}
{{- else if hasSuffix "h" $text }}
{{- $number = trimSuffix "h" $text }}{{- $scale = 3600000.0 }}
{{- end }}
{{- if not (regexMatch "^[0-9.]+$" $number) }}
{{- fail (printf "%s: %q is not a duration (write 500ms, 8s, 5m or 1h)" .key $text) }}
{{- end }}
{{- mulf (float64 $number) $scale | floor | int64 }}
{{- end }}

{{/*
A config size (64Mi, 1Gi, 512Ki, 10M, 1G, 1k, or bytes) in bytes, parsed as the server parses it.
*/}}
{{- define "attestgate.sizeBytes" -}}
{{- $text := trim (toString .value) }}
{{- $units := list (list "Ki" 1024) (list "Mi" 1048576) (list "Gi" 1073741824) (list "k" 1000) (list "M" 1000000) (list "G" 1000000000) }}
{{- $number := $text }}
{{- $scale := 1 }}
{{- range $units }}
{{- if and (eq $scale 1) (hasSuffix (index . 0) $text) }}
{{- $number = trimSuffix (index . 0) $text }}
{{- $scale = index . 1 }}
{{- end }}
{{- end }}
{{- if not (regexMatch "^[0-9]+$" $number) }}
{{- fail (printf "%s: %q is not a size (write 64Mi, 1Gi, 512Ki or bytes)" .key $text) }}
{{- end }}
{{- mul (int64 $number) $scale }}
{{- end }}

{{/*
A Kubernetes memory quantity in bytes: an integer with an optional binary (Ki..Ei) or decimal
(k..E) suffix. Anything else (fractions, exponents) fails, since the memory check needs a number.
*/}}
{{- define "attestgate.quantityBytes" -}}
{{- $text := trim (toString .value) }}
{{- $units := list (list "Ki" 1024) (list "Mi" 1048576) (list "Gi" 1073741824) (list "Ti" 1099511627776) (list "k" 1000) (list "M" 1000000) (list "G" 1000000000) (list "T" 1000000000000) }}
{{- $number := $text }}
{{- $scale := 1 }}
{{- range $units }}
{{- if and (eq $scale 1) (hasSuffix (index . 0) $text) }}
{{- $number = trimSuffix (index . 0) $text }}
{{- $scale = index . 1 }}
{{- end }}
{{- end }}
{{- if not (regexMatch "^[0-9]+$" $number) }}
{{- fail (printf "%s: %q: write the memory as an integer with Ki, Mi, Gi, k, M or G so it can be checked against the caches" .key $text) }}
{{- end }}
{{- mul (int64 $number) $scale }}
{{- end }}

{{/* Checks --------------------------------------------------------------------------------- */}}

{{/*
The server refuses a deadline above webhookTimeoutSeconds less 1 s (src/config/load.rs); refuse it
here first, so a bad pair fails the install rather than every replica's start.
*/}}
{{- define "attestgate.checkDeadline" -}}
{{- $timeout := int64 .Values.webhook.timeoutSeconds }}
{{- $deadline := int64 (include "attestgate.durationMillis" (dict "key" "config.deadline" "value" (default "8s" .Values.config.deadline))) }}
{{- $latest := mul (sub $timeout 1) 1000 }}
{{- if or (le $deadline 0) (gt $deadline $latest) }}
{{- fail (printf "config.deadline (%d ms) must be above zero and at most webhook.timeoutSeconds (%d s) less 1 s, %d ms: the answer needs that second to reach the API server" $deadline $timeout $latest) }}
{{- end }}
{{- end }}

{{/*
Memory: the limit must hold the three caches (x 1.25) plus 192Mi for the process and in-flight
work; values.yaml shows the arithmetic.
*/}}
{{- define "attestgate.checkMemory" -}}
{{- $limit := dig "limits" "memory" "" (.Values.resources | default dict) }}
{{- if $limit }}
{{- $cache := .Values.config.cache | default dict }}
{{- $decisions := int64 (include "attestgate.sizeBytes" (dict "key" "config.cache.decisionsMaxBytes" "value" (dig "decisionsMaxBytes" "16Mi" $cache))) }}
{{- $content := int64 (include "attestgate.sizeBytes" (dict "key" "config.cache.contentMaxBytes" "value" (dig "contentMaxBytes" "64Mi" $cache))) }}
{{- $evidence := int64 (include "attestgate.sizeBytes" (dict "key" "config.cache.evidenceMaxBytes" "value" (dig "evidenceMaxBytes" "64Mi" $cache))) }}
{{- $caches := add $decisions $content $evidence }}
{{- $needed := add (div (mul $caches 5) 4) 201326592 }}
{{- $have := int64 (include "attestgate.quantityBytes" (dict "key" "resources.limits.memory" "value" $limit)) }}
{{- if lt $have $needed }}
{{- fail (printf "resources.limits.memory %s (%d MiB) is below what the caches need: 1.25 x (decisions %d + content %d + evidence %d MiB) + 192 MiB = %d MiB; raise the memory or lower config.cache.*MaxBytes (values.yaml shows the arithmetic)" (toString $limit) (div $have 1048576) (div $decisions 1048576) (div $content 1048576) (div $evidence 1048576) (div (add $needed 1048575) 1048576)) }}
{{- end }}
{{- end }}
{{- end }}
