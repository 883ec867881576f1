{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "kipvs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects. */}}
{{- define "kipvs.fullname" -}}
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

{{/* Labels the pods are selected by; never change them in an upgrade. */}}
{{- define "kipvs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kipvs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "kipvs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kipvs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: service-proxy
{{- end -}}

{{- define "kipvs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kipvs.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kipvs.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The ConfigMap holding the configuration: the release's own or an existing one. */}}
{{- define "kipvs.configMapName" -}}
{{- default (include "kipvs.fullname" .) .Values.config.existingConfigMap -}}
{{- end -}}

{{- define "kipvs.configMountPath" -}}
{{- if .Values.config.existingConfigMap -}}
{{- .Values.config.existingConfigMapMountPath -}}
{{- else -}}
/etc/kipvs
{{- end -}}
{{- end -}}

{{- define "kipvs.configKey" -}}
{{- if .Values.config.existingConfigMap -}}
{{- .Values.config.existingConfigMapKey -}}
{{- else -}}
config.yaml
{{- end -}}
{{- end -}}

{{/*
Where the metrics server binds. Prometheus can only scrape it off the node
when it binds a reachable address; kube-proxy's default, 127.0.0.1, keeps
/metrics and /configz private to the node.
*/}}
{{/*
Ports: kube-proxy's 10249 and 10256, unless set; next to kube-proxy
(coexistence) 10266 and 10267, which no Kubernetes component uses, so both
proxies bind on one host network.
*/}}
{{- define "kipvs.metricsPort" -}}
{{- .Values.metrics.port | default (ternary 10266 10249 .Values.coexistence.enabled) -}}
{{- end -}}

{{- define "kipvs.healthPort" -}}
{{- .Values.health.port | default (ternary 10267 10256 .Values.coexistence.enabled) -}}
{{- end -}}

{{- define "kipvs.metricsBindAddress" -}}
{{- $host := ternary .Values.metrics.bindAddress "127.0.0.1" .Values.metrics.enabled -}}
{{- include "kipvs.hostPort" (list $host (include "kipvs.metricsPort" .)) -}}
{{- end -}}

{{- define "kipvs.healthzBindAddress" -}}
{{- include "kipvs.hostPort" (list .Values.health.bindAddress (include "kipvs.healthPort" .)) -}}
{{- end -}}

{{/*
The Prometheus Operator's kinds render only where the cluster has their CRDs
(kube-prometheus-stack installs them): otherwise the install would fail on
an unknown kind, or worse, the monitor would silently not exist.
*/}}
{{- define "kipvs.requireMonitoringApi" -}}
{{- if not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") -}}
{{- fail "metrics.serviceMonitor, metrics.podMonitor and alerts need the Prometheus Operator's CRDs (monitoring.coreos.com/v1), which this cluster does not have: install them (kube-prometheus-stack does) or turn those values off" -}}
{{- end -}}
{{- end -}}

{{/* host:port, with an IPv6 host in brackets. */}}
{{- define "kipvs.hostPort" -}}
{{- $host := index . 0 -}}
{{- if contains ":" $host -}}
{{- printf "[%s]:%d" $host (int (index . 1)) -}}
{{- else -}}
{{- printf "%s:%d" $host (int (index . 1)) -}}
{{- end -}}
{{- end -}}

{{/*
The KubeProxyConfiguration built from values. Empty settings are left out so
kipvs applies kube-proxy's defaults to them.
*/}}
{{- define "kipvs.config" -}}
{{- $c := .Values.config -}}
{{- $ipvs := dict
  "scheduler" $c.ipvs.scheduler
  "syncPeriod" $c.ipvs.syncPeriod
  "minSyncPeriod" $c.ipvs.minSyncPeriod
  "strictARP" $c.ipvs.strictARP
  "tcpTimeout" $c.ipvs.tcpTimeout
  "tcpFinTimeout" $c.ipvs.tcpFinTimeout
  "udpTimeout" $c.ipvs.udpTimeout
-}}
{{- with $c.ipvs.excludeCIDRs }}{{ $_ := set $ipvs "excludeCIDRs" . }}{{ end -}}
{{- $cfg := dict
  "mode" "ipvs"
  "bindAddress" "0.0.0.0"
  "metricsBindAddress" (include "kipvs.metricsBindAddress" .)
  "healthzBindAddress" (include "kipvs.healthzBindAddress" .)
  "iptables" (dict "masqueradeAll" $c.masqueradeAll "masqueradeBit" (int $c.masqueradeBit))
  "ipvs" $ipvs
-}}
{{- with $c.clusterCIDR }}{{ $_ := set $cfg "clusterCIDR" . }}{{ end -}}
{{- with $c.nodePortAddresses }}{{ $_ := set $cfg "nodePortAddresses" . }}{{ end -}}
{{- with $c.hostnameOverride }}{{ $_ := set $cfg "hostnameOverride" . }}{{ end -}}
{{- with $c.kubeconfig }}{{ $_ := set $cfg "clientConnection" (dict "kubeconfig" .) }}{{ end -}}
{{- $kipvs := dict "affinityMode" $c.affinityMode "interfaceName" $c.interfaceName -}}
{{- if .Values.coexistence.enabled }}{{ $_ := set $kipvs "proxyName" .Values.coexistence.proxyName }}{{ end -}}
{{- with $c.gracePeriod }}{{ $_ := set $kipvs "gracePeriod" . }}{{ end -}}
{{- with $c.serviceIPBinding }}{{ $_ := set $kipvs "serviceIPBinding" . }}{{ end -}}
{{- with $c.ipvsRateEstimation }}{{ $_ := set $kipvs "ipvsRateEstimation" . }}{{ end -}}
{{- $_ := set $cfg "kipvs" $kipvs -}}
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
{{ mustMergeOverwrite $cfg (deepCopy $c.extra) | toYaml -}}
{{- end -}}

{{/*
Where kipvs finds the API server. In a pod, the in-cluster address is the
kubernetes Service's cluster IP, which only a service proxy makes reachable:
when kipvs replaces kube-proxy it would wait for itself. So the chart wants a
direct address (k8sServiceHost), or a configuration that names the server
(an existing ConfigMap, as kubeadm's, or a kubeconfig), or kube-proxy still
running beside kipvs (coexistence).
*/}}
{{- define "kipvs.checkApiServer" -}}
{{- if not (or .Values.k8sServiceHost .Values.config.existingConfigMap .Values.config.kubeconfig .Values.coexistence.enabled) -}}
{{- fail "kipvs replaces kube-proxy, so it cannot reach the API server through the kubernetes Service's cluster IP (nothing programs it before kipvs runs). Set k8sServiceHost (and k8sServicePort) to an address the nodes reach directly, e.g. --set k8sServiceHost=10.0.0.10 --set k8sServicePort=6443; or set config.existingConfigMap or config.kubeconfig to a configuration that names the server; or coexistence.enabled=true while kube-proxy still runs." -}}
{{- end -}}
{{- end -}}
