{{/* Name of the chart's objects: the release name, or release-chart when they differ. */}}
{{- define "finetune.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "finetune.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "finetune.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "finetune.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "finetune.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The rules the operator needs in a namespace it watches; nothing more (see operator/README.md). */}}
{{- define "finetune.watchRules" -}}
- apiGroups: ["finetune.dev"]
  resources: ["finetunejobs"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["finetune.dev"]
  resources: ["finetunejobs/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: ["jobset.x-k8s.io"]
  resources: ["jobsets"]
  # a job with several nodes, where the cluster has JobSet (value jobSet)
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  # the rendezvous Service of a job with several nodes
  verbs: ["get", "create"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["configmaps", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* The trainer images' tag: trainer.tag, else the chart's appVersion, which is the project's (pom) version. */}}
{{- define "finetune.trainerTag" -}}
{{- .Values.trainer.tag | default .Chart.AppVersion | toString -}}
{{- end -}}

{{/* Trainer image of jobs with GPUs: trainer.image, else the CUDA build, REPOSITORY:TAG-cuda. */}}
{{- define "finetune.trainerImage" -}}
{{- .Values.trainer.image | default (printf "%s:%s-cuda" .Values.trainer.repository (include "finetune.trainerTag" .)) -}}
{{- end -}}

{{/* Trainer image of jobs without GPUs: trainer.cpuImage, else the CPU build, REPOSITORY:TAG. */}}
{{- define "finetune.trainerCpuImage" -}}
{{- .Values.trainer.cpuImage | default (printf "%s:%s" .Values.trainer.repository (include "finetune.trainerTag" .)) -}}
{{- end -}}

{{/* imagePullSecrets' names, comma-separated, for the operator to put in trainer Pods. */}}
{{- define "finetune.imagePullSecretNames" -}}
{{- $names := list -}}
{{- range .Values.imagePullSecrets -}}
{{- $names = append $names (required "imagePullSecrets entries need a name" .name) -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}
