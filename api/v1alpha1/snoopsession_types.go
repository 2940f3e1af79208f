package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterRelease asks a session to match requests against the live cluster's
// own OpenAPI document instead of an embedded release, so custom resources
// and aggregated APIs are known.
const ClusterRelease = "cluster"

// IgnoreLabel, on a namespace or a pod, keeps it from ever being recorded:
// the webhook configuration does not even send such pods to the operator.
const IgnoreLabel = "snoop.apisnoop.dev/ignore"

// ManagedByLabel, with ManagedByValue, marks the Secrets and ConfigMaps the
// operator writes. The manager watches only objects with it, so that it never
// caches the cluster's other Secrets, and deletes only objects with it.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "kube-apisnoop"
)

// InterceptionMode says how an injected pod's API traffic reaches the proxy.
// +kubebuilder:validation:Enum=iptables;env
type InterceptionMode string

const (
	// InterceptionIPTables redirects TCP to the API server to the sidecar with
	// an init container that needs NET_ADMIN and NET_RAW.
	InterceptionIPTables InterceptionMode = "iptables"
	// InterceptionEnv points KUBERNETES_SERVICE_HOST/PORT at the sidecar; it
	// needs no privilege and fits Pod Security baseline.
	InterceptionEnv InterceptionMode = "env"
)

// SourceKind says where a session's requests come from.
// +kubebuilder:validation:Enum=pods;audit
type SourceKind string

const (
	// SourcePods records the target pods through an injected proxy.
	SourcePods SourceKind = "pods"
	// SourceAudit takes requests from the API server's audit webhook
	// backend, cluster-wide, filtered by spec.audit; nothing is injected.
	SourceAudit SourceKind = "audit"
)

// SnoopSessionSpec selects the pods to record and the release to measure
// their API calls against.
// +kubebuilder:validation:XValidation:rule="!(has(self.duration) && has(self.stopAt))",message="set either spec.duration or spec.stopAt, not both"
// +kubebuilder:validation:XValidation:rule="!has(self.audit) || (has(self.source) && self.source == 'audit')",message="spec.audit filters the API server's audit stream: it needs spec.source: audit"
// +kubebuilder:validation:XValidation:rule="!has(self.source) || self.source != 'audit' || !has(self.targets) || (!has(self.targets.podSelector) && !has(self.targets.namespaceSelector) && !has(self.targets.namespaces))",message="a session with spec.source: audit records no pods: remove spec.targets, and filter requests with spec.audit"
// +kubebuilder:validation:XValidation:rule="!has(self.source) || self.source != 'audit' || !has(self.recording) || !has(self.recording.requestBodies) || !self.recording.requestBodies",message="spec.recording.requestBodies applies to recorded pods: for spec.source: audit, the API server's audit policy decides what is logged"
// +kubebuilder:validation:XValidation:rule="!has(self.source) || self.source != 'audit' || !has(self.restartWorkloads) || !self.restartWorkloads",message="spec.restartWorkloads applies to recorded pods, not to spec.source: audit"
type SnoopSessionSpec struct {
	// source says where the session's requests come from: "pods" (the
	// default) records the pods spec.targets selects, through an injected
	// proxy; "audit" takes every request the API server sends to the
	// manager's audit sink (its audit webhook backend), cluster-wide,
	// filtered by spec.audit, and injects nothing. Audit sessions are taken
	// only in the namespaces the manager's --audit-session-namespaces names
	// (by default the operator's own); elsewhere they stop with
	// AuditSourceNotAllowed.
	// +optional
	// +kubebuilder:default=pods
	Source SourceKind `json:"source,omitempty"`

	// audit filters the audit stream of a session with source "audit".
	// When absent, every audited request counts.
	// +optional
	Audit *AuditFilter `json:"audit,omitempty"`

	// targets selects the pods whose API traffic is recorded. When empty, every
	// pod in the session's own namespace is a target.
	// +optional
	Targets Targets `json:"targets,omitempty"`

	// kubernetesRelease is the Kubernetes minor release whose API the requests
	// are matched against, like "1.37", or "cluster" to use the live cluster's
	// own OpenAPI document (custom resources included).
	// +required
	// +kubebuilder:validation:MaxLength=8
	// +kubebuilder:validation:XValidation:rule="self == 'cluster' || self.matches('^1[.][0-9]{1,2}$')",message="spec.kubernetesRelease must be a minor release like \"1.37\" or \"cluster\""
	// +kubebuilder:validation:XValidation:rule="self == 'cluster' || !self.matches('^1[.][0-9]{1,2}$') || int(self.split('.')[1]) >= 31",message="spec.kubernetesRelease must be 1.31 or later; older releases are not supported"
	KubernetesRelease string `json:"kubernetesRelease"`

	// interception says how traffic reaches the recording proxy: "iptables"
	// (default; an init container redirects the API server's address) or
	// "env" (no privilege; KUBERNETES_SERVICE_HOST/PORT point at the proxy).
	// +optional
	// +kubebuilder:default=iptables
	Interception InterceptionMode `json:"interception,omitempty"`

	// recording says what is kept of each request. By default only metadata
	// (method, path, query, status, sizes, user agent) is kept.
	// +optional
	Recording Recording `json:"recording,omitempty"`

	// duration stops recording this long after the session started, like "1h".
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`

	// stopAt stops recording at this time (RFC 3339).
	// +optional
	StopAt *metav1.Time `json:"stopAt,omitempty"`

	// suspend pauses recording without losing results; new pods are not
	// injected while it is true.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// restartWorkloads, when true, restarts the Deployments, StatefulSets and
	// DaemonSets that own target pods running without the recording proxy,
	// so that their new pods are recorded. It is opt-in because it rolls out
	// workloads the session does not own. Like `kubectl rollout restart`, it
	// sets an annotation (snoop.apisnoop.dev/restartedAt) on the pod
	// template, at most once per workload and generation of the session,
	// and only while the session injects. Pods with no such owner are left
	// alone; the Recording condition counts them.
	// +optional
	RestartWorkloads bool `json:"restartWorkloads,omitempty"`
}

// Targets selects pods by label, within a set of namespaces.
// +kubebuilder:validation:XValidation:rule="!(has(self.namespaceSelector) && has(self.namespaces))",message="set either spec.targets.namespaceSelector or spec.targets.namespaces, not both"
// +kubebuilder:validation:XValidation:rule="!has(self.podSelector) || !has(self.podSelector.matchExpressions) || self.podSelector.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="spec.targets.podSelector.matchExpressions: operator must be In, NotIn, Exists or DoesNotExist"
// +kubebuilder:validation:XValidation:rule="!has(self.namespaceSelector) || !has(self.namespaceSelector.matchExpressions) || self.namespaceSelector.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="spec.targets.namespaceSelector.matchExpressions: operator must be In, NotIn, Exists or DoesNotExist"
type Targets struct {
	// podSelector selects the target pods by label. When absent, every pod in
	// the selected namespaces is a target.
	// +optional
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`

	// namespaceSelector selects the namespaces to look for target pods in, by
	// label. Exclusive with namespaces. When both are absent, only the
	// session's own namespace is used.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// namespaces lists the namespaces to look for target pods in, by name.
	// Exclusive with namespaceSelector.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces,omitempty"`
}

// AuditFilter keeps the audited requests of some clients. A request counts
// when it passes every list that is set: its user is one of users or
// serviceAccounts (when either is set), its object's namespace is one of
// namespaces, and its user agent starts with one of userAgents.
type AuditFilter struct {
	// users are user names, like "kubernetes-admin" or
	// "system:serviceaccount:ns:name".
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	Users []string `json:"users,omitempty"`

	// serviceAccounts are service accounts as "namespace/name".
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=317
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`

	// namespaces keeps requests about objects in these namespaces
	// (cluster-scoped and non-resource requests have none).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces,omitempty"`

	// userAgents keeps requests whose user agent starts with one of these,
	// like "e2e.test/" (the e2e suite's requests, attributed per test).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	UserAgents []string `json:"userAgents,omitempty"`
}

// Recording says what is kept of each request.
// +kubebuilder:validation:XValidation:rule="!has(self.maxBodyBytes) || self.requestBodies",message="spec.recording.maxBodyBytes needs spec.recording.requestBodies: true"
type Recording struct {
	// requestBodies keeps request bodies (capped at maxBodyBytes) to measure
	// which fields are used, and keeps the pods' writes to objects with
	// their bodies for kubectl snoop history --session. Secret data is
	// always replaced by a marker, and a Secret's body is never kept.
	// +optional
	RequestBodies bool `json:"requestBodies,omitempty"`

	// maxBodyBytes caps each kept request body; longer bodies are cut and
	// counted. Defaults to 65536 when requestBodies is true.
	// +optional
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=1048576
	MaxBodyBytes *int32 `json:"maxBodyBytes,omitempty"`
}

// Condition types of a SnoopSession.
const (
	// ConditionReady is true when the session is valid and its release resolved.
	ConditionReady = "Ready"
	// ConditionRecording is true while target pods are being recorded.
	ConditionRecording = "Recording"
	// ConditionDegraded is true when part of the session does not work.
	ConditionDegraded = "Degraded"
	// ConditionCompleted is true once the session has stopped for good (its
	// stopAt or duration passed): its results are final.
	ConditionCompleted = "Completed"
)

// Condition reasons of a SnoopSession.
const (
	ReasonReleaseResolved    = "ReleaseResolved"
	ReasonUnsupportedRelease = "UnsupportedRelease"
	ReasonInvalidSelector    = "InvalidSelector"
	ReasonSuspended          = "Suspended"
	ReasonStopped            = "Stopped"
	ReasonNoTargets          = "NoTargetPods"
	ReasonPodsSelected       = "PodsSelected"
	ReasonAsExpected         = "AsExpected"
	ReasonReconcileError     = "ReconcileError"
	ReasonCompleted          = "Completed"
	ReasonNotCompleted       = "Running"
	// Degraded reasons.
	ReasonCollectorUnreachable  = "CollectorUnreachable"
	ReasonCertificatePending    = "CertificatePending"
	ReasonPodsWaitingForRestart = "PodsWaitingForRestart"
	// ReasonAuditStream: a session with spec.source audit records the
	// audit stream.
	ReasonAuditStream = "AuditStream"
	// ReasonNoAuditEvents: the API server sends the manager no audit
	// events.
	ReasonNoAuditEvents = "NoAuditEvents"
	// ReasonAuditSourceNotAllowed: the session takes the audit stream in a
	// namespace the operator takes no audit sessions in.
	ReasonAuditSourceNotAllowed = "AuditSourceNotAllowed"
)

// Field owners of the status: server-side apply gives each field one writer.
const (
	// FieldOwnerController writes observedGeneration, conditions, release,
	// pods and completionTime.
	FieldOwnerController = "apisnoop-controller"
	// FieldOwnerCollector writes the measured results: requests, the
	// unknown, failed and ignored counts, coverage, unknownPaths, clients,
	// lastUpdateTime, resultsConfigMaps and resultsPage.
	FieldOwnerCollector = "apisnoop-collector"
)

// SnoopSessionStatus is what the operator observed and measured.
type SnoopSessionStatus struct {
	// observedGeneration is the generation of the spec the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions are Completed, Ready, Recording and Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// release is the resolved release the requests are matched against, like
	// "1.37", or the live cluster's version for "cluster".
	// +optional
	Release string `json:"release,omitempty"`

	// pods counts the target pods.
	// +optional
	Pods PodCounts `json:"pods,omitempty"`

	// requests is the number of API requests recorded.
	// +optional
	Requests int64 `json:"requests"`

	// unknownRequests counts requests that match no operation of the release.
	// +optional
	UnknownRequests int64 `json:"unknownRequests"`

	// failedRequests counts requests answered with a 4xx or 5xx status.
	// +optional
	FailedRequests int64 `json:"failedRequests"`

	// ignoredRequests counts requests that sidecars shipped after the
	// session stopped or while it was suspended: not in the results.
	// +optional
	IgnoredRequests int64 `json:"ignoredRequests,omitempty"`

	// coverage summarises the operations of the release hit by the recorded
	// requests, per stability level.
	// +optional
	Coverage CoverageSummary `json:"coverage,omitempty"`

	// unknownPaths are the most frequent requests that match no operation
	// of the release, by request shape (method and path with names
	// replaced), at most five.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=5
	UnknownPaths []PathCount `json:"unknownPaths,omitempty"`

	// clients is the number of distinct clients (pod, service account, user
	// agent) seen.
	// +optional
	Clients int32 `json:"clients,omitempty"`

	// lastUpdateTime is when the results were last updated.
	// +optional
	LastUpdateTime *metav1.Time `json:"lastUpdateTime,omitempty"`

	// completionTime is when the session stopped for good.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// resultsConfigMaps names the ConfigMaps in the session's namespace that
	// hold the detailed results; the first holds report.md.
	// +optional
	// +listType=atomic
	ResultsConfigMaps []string `json:"resultsConfigMaps,omitempty"`

	// resultsPage is the path of the session's live page on the manager's
	// results API (served beside its webhook, on the same port), like
	// "/sessions/NAMESPACE/NAME/page": an HTML report of the session's
	// results, fetched again every few seconds with the bearer token of
	// someone who may get the session, which the reader gives it.
	// +optional
	ResultsPage string `json:"resultsPage,omitempty"`
}

// PathCount is a request shape and how many requests had it.
type PathCount struct {
	// path is the method and path, like "GET /apis/example.com/v1/widgets".
	// +required
	Path string `json:"path"`
	// count is the number of requests.
	// +required
	Count int64 `json:"count"`
}

// PodCounts counts target pods by injection state.
type PodCounts struct {
	// matched is the number of running pods the targets select.
	// +optional
	Matched int32 `json:"matched"`
	// injected is the number of matched pods that carry the recording proxy.
	// +optional
	Injected int32 `json:"injected"`
	// waitingForRestart is the number of matched pods created before the
	// session, which are recorded only once they are recreated.
	// +optional
	WaitingForRestart int32 `json:"waitingForRestart"`
}

// CoverageSummary counts hit operations per stability level and for the
// operations eligible for conformance.
type CoverageSummary struct {
	// stable covers the operations of GA (v1, v2, ...) versions.
	// +optional
	Stable LevelCoverage `json:"stable"`
	// beta covers the operations of beta versions.
	// +optional
	Beta LevelCoverage `json:"beta"`
	// alpha covers the operations of alpha versions.
	// +optional
	Alpha LevelCoverage `json:"alpha"`
	// eligible covers the stable operations eligible for conformance tests.
	// +optional
	Eligible LevelCoverage `json:"eligible"`
}

// LevelCoverage counts operations and how many of them were hit.
type LevelCoverage struct {
	// operations is the number of operations of the release at this level.
	// +optional
	Operations int32 `json:"operations"`
	// hit is the number of those operations that at least one request used.
	// +optional
	Hit int32 `json:"hit"`
	// percent is hit / operations as a percentage with one decimal, like "42.7".
	// +optional
	Percent string `json:"percent"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=snoop;snoops,categories=apisnoop
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.source`
// +kubebuilder:printcolumn:name="Release",type=string,JSONPath=`.spec.kubernetesRelease`
// +kubebuilder:printcolumn:name="Pods",type=integer,JSONPath=`.status.pods.matched`
// +kubebuilder:printcolumn:name="Requests",type=integer,JSONPath=`.status.requests`
// +kubebuilder:printcolumn:name="Stable %",type=string,JSONPath=`.status.coverage.stable.percent`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Completed",type=string,JSONPath=`.status.conditions[?(@.type=="Completed")].status`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Injected",type=integer,JSONPath=`.status.pods.injected`,priority=1
// +kubebuilder:printcolumn:name="Eligible %",type=string,JSONPath=`.status.coverage.eligible.percent`,priority=1
// +kubebuilder:printcolumn:name="Beta %",type=string,JSONPath=`.status.coverage.beta.percent`,priority=1
// +kubebuilder:printcolumn:name="Unknown",type=integer,JSONPath=`.status.unknownRequests`,priority=1
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failedRequests`,priority=1
// +kubebuilder:printcolumn:name="Recording",type=string,JSONPath=`.status.conditions[?(@.type=="Recording")].reason`,priority=1

// SnoopSession records the Kubernetes API calls of selected pods and measures
// them against a Kubernetes release's API.
type SnoopSession struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec selects the pods and the release.
	// +required
	Spec SnoopSessionSpec `json:"spec"`

	// status is what the operator observed and measured.
	// +optional
	Status SnoopSessionStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// SnoopSessionList is a list of SnoopSessions.
type SnoopSessionList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SnoopSession `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SnoopSession{}, &SnoopSessionList{})
}
