// Package webhook is the pod mutation that records a pod: pure builders for
// the recording proxy sidecar, the redirect init container and their
// volumes, and the admission handler that applies them to the pods a
// SnoopSession selects.
package webhook

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/targets"
)

// Names and places of what is injected.
const (
	IPTablesContainerName = "snoop-iptables"
	// ProxyPort is where the sidecar serves TLS, on loopback only: iptables
	// redirects locally made connections there, and env mode dials it.
	ProxyPort = 15443
	// AdminPort serves /readyz for the startup probe, so it listens on the
	// pod's address; it serves counts, never request data.
	AdminPort = 15020
	// ProxyUID is the sidecar's user; the redirect rules leave its own
	// connections to the API server alone.
	ProxyUID int64 = 15337

	// ProxyCertSecret and TrustBundleConfigMap are kept in every target
	// namespace by the operator: the proxy's serving pair, and the cluster
	// CA with the operator's CA, which injected pods trust.
	ProxyCertSecret      = "apisnoop-proxy-tls"
	TrustBundleConfigMap = "apisnoop-ca-bundle"
	// TrustBundleKey holds the bundle, the key kube-root-ca.crt uses.
	TrustBundleKey = "ca.crt"
	// CatalogConfigMap holds, where a session measures against
	// kubernetesRelease "cluster", the live cluster's catalog (custom
	// resources included) as catalog.Encode writes it, under CatalogKey,
	// and its request-body schemas as catalog.EncodeSchemas writes them,
	// under SchemasKey. SchemasKey is left out when both together would
	// not fit a ConfigMap: sidecars then record without field coverage.
	CatalogConfigMap = "apisnoop-catalog"
	CatalogKey       = "catalog.json.zst"
	SchemasKey       = "schemas.json.zst"
	// CollectorAudience is the audience of the token a sidecar shows the
	// collector.
	CollectorAudience = "apisnoop.dev/collector"

	tlsVolume   = "snoop-proxy-tls"
	tokenVolume = "snoop-collector-token"
	tlsDir      = "/var/run/apisnoop/tls"
	tokenDir    = "/var/run/apisnoop/token"
	trustVolume = "snoop-trust"
	trustDir    = "/var/run/apisnoop/trust"
	catalogVol  = "snoop-catalog"
	catalogDir  = "/var/run/apisnoop/catalog"

	// AnnotationSession names the session that injected a pod.
	AnnotationSession = "snoop.apisnoop.dev/session"
)

// Injection is what one pod gets: from the session that selects it and the
// operator's settings.
type Injection struct {
	// Session is namespace/name of the selecting session.
	Session string
	// Release is the session's kubernetesRelease: an embedded release, or
	// "cluster" for the catalog the operator keeps in CatalogConfigMap.
	Release      string
	Mode         snoopv1alpha1.InterceptionMode
	KeepBodies   bool
	MaxBodyBytes int32
	// Image holds /apisnoop and /snoop-proxy.
	Image string
	// CollectorURL is where the sidecar ships deltas; empty keeps them in
	// the sidecar.
	CollectorURL string
}

// Inject adds the recording proxy to pod and reports whether it changed
// anything: a pod that has the proxy already is left as it is.
func Inject(pod *corev1.Pod, in Injection) bool {
	if targets.HasProxy(pod) {
		return false
	}
	front := []corev1.Container{ProxyContainer(in)}
	if in.Mode == snoopv1alpha1.InterceptionEnv {
		pointAtProxy(pod.Spec.InitContainers)
		pointAtProxy(pod.Spec.Containers)
	} else {
		front = append(front, IPTablesContainer(in))
	}
	// The sidecar first: the kubelet starts it and waits for its startup
	// probe before anything else, so the user's own init containers are
	// recorded too. The redirect comes after it; the sidecar's own
	// connections are exempt from it by user, so the order costs nothing.
	pod.Spec.InitContainers = append(front, pod.Spec.InitContainers...)
	pod.Spec.Volumes = append(pod.Spec.Volumes, Volumes(in)...)
	trustProxy(pod)
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationSession] = in.Session
	return true
}

// ProxyContainer is the recording proxy, a native sidecar (an init container
// that keeps running) with a startup probe, so that the containers after it
// start only when it serves.
func ProxyContainer(in Injection) corev1.Container {
	args := []string{
		"--listen=127.0.0.1:" + strconv.Itoa(ProxyPort),
		"--admin-listen=:" + strconv.Itoa(AdminPort),
		"--cert-file=" + tlsDir + "/tls.crt",
		"--key-file=" + tlsDir + "/tls.key",
		// The sidecar is added after the ServiceAccount admission plugin
		// mounted the API access volume into the pod's containers, and a
		// pod may not mount it at all: the sidecar verifies the API server
		// with the namespace's trust bundle, mounted for itself.
		"--upstream-ca-file=" + trustDir + "/" + TrustBundleKey,
	}
	mounts := []corev1.VolumeMount{
		{Name: tlsVolume, MountPath: tlsDir, ReadOnly: true},
		{Name: trustVolume, MountPath: trustDir, ReadOnly: true},
	}
	if in.CollectorURL != "" {
		mounts = append(mounts, corev1.VolumeMount{Name: tokenVolume, MountPath: tokenDir, ReadOnly: true})
	}
	args = append(args, "--release="+in.Release)
	if in.Release == snoopv1alpha1.ClusterRelease {
		// Without a readable catalog the sidecar matches against an empty
		// one named "cluster": every request is unknown, none is lost.
		// The schemas are read only when the first kept body arrives;
		// without them, bodies go unmeasured and requests still count.
		args = append(args, "--catalog-file="+catalogDir+"/"+CatalogKey, "--schemas-file="+catalogDir+"/"+SchemasKey)
		mounts = append(mounts, corev1.VolumeMount{Name: catalogVol, MountPath: catalogDir, ReadOnly: true})
	}
	if in.CollectorURL != "" {
		args = append(args,
			"--collector="+in.CollectorURL,
			"--collector-ca-file="+tlsDir+"/ca.crt",
			"--collector-token-file="+tokenDir+"/token")
	}
	if in.KeepBodies {
		args = append(args, "--keep-bodies")
		if in.MaxBodyBytes > 0 {
			args = append(args, fmt.Sprintf("--max-body-bytes=%d", in.MaxBodyBytes))
		}
	}
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	return corev1.Container{
		Name:    targets.ProxyContainerName,
		Image:   in.Image,
		Command: []string{"/snoop-proxy"},
		Args:    args,
		Env: []corev1.EnvVar{
			field("POD_NAME", "metadata.name"),
			field("POD_NAMESPACE", "metadata.namespace"),
			field("POD_UID", "metadata.uid"),
			field("POD_SERVICE_ACCOUNT", "spec.serviceAccountName"),
		},
		Ports:         []corev1.ContainerPort{{Name: "snoop-admin", ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP}},
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		StartupProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(AdminPort)}},
			PeriodSeconds:    1,
			FailureThreshold: 30,
		},
		// Measured: about 20 MiB idle and 25 MiB under load.
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("96Mi")},
		},
		VolumeMounts: mounts,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To(ProxyUID),
			RunAsGroup:               ptr.To(ProxyUID),
			RunAsNonRoot:             ptr.To(true),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

// IPTablesContainer installs the redirect rules: TCP to the kubernetes
// Service goes to the sidecar, except the sidecar's own.
func IPTablesContainer(in Injection) corev1.Container {
	return corev1.Container{
		Name:    IPTablesContainerName,
		Image:   in.Image,
		Command: []string{"/apisnoop", "iptables"},
		// The service address comes from KUBERNETES_SERVICE_HOST and
		// _PORT, which the kubelet sets in every container.
		Args: []string{
			"--proxy-port=" + strconv.Itoa(ProxyPort),
			"--exclude-uid=" + strconv.FormatInt(ProxyUID, 10),
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To[int64](0),
			RunAsNonRoot:             ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
	}
}

// Volumes are the sidecar's serving pair, the trust bundle it verifies the
// API server with, when it ships to a collector its token for it, and for
// the cluster's own release the catalog.
func Volumes(in Injection) []corev1.Volume {
	volumes := []corev1.Volume{
		{Name: tlsVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: ProxyCertSecret}}},
		{Name: trustVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: TrustBundleConfigMap},
		}}},
	}
	if in.CollectorURL != "" {
		volumes = append(volumes, corev1.Volume{Name: tokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: CollectorAudience, ExpirationSeconds: ptr.To[int64](3600), Path: "token",
			}}},
		}}})
	}
	if in.Release == snoopv1alpha1.ClusterRelease {
		// Optional: the webhook injects only once the catalog exists, but a
		// catalog deleted later must not keep a recreated pod from starting.
		volumes = append(volumes, corev1.Volume{Name: catalogVol, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: CatalogConfigMap}, Optional: ptr.To(true),
		}}})
	}
	return volumes
}

// pointAtProxy sends containers' in-cluster clients to the sidecar (env
// interception): client-go and kubectl build the API server address from
// these two variables.
func pointAtProxy(containers []corev1.Container) {
	for i := range containers {
		c := &containers[i]
		c.Env = slices.DeleteFunc(slices.Clone(c.Env), func(e corev1.EnvVar) bool {
			return e.Name == "KUBERNETES_SERVICE_HOST" || e.Name == "KUBERNETES_SERVICE_PORT"
		})
		c.Env = append(c.Env,
			corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: "127.0.0.1"},
			corev1.EnvVar{Name: "KUBERNETES_SERVICE_PORT", Value: strconv.Itoa(ProxyPort)})
	}
}

// trustProxy makes the pod's service account volumes (kube-api-access-*,
// added by the ServiceAccount admission plugin before webhooks run) take
// their CA from the bundle that holds the cluster CA and the operator's, so
// that in-cluster clients accept the proxy's certificate and still the API
// server's.
func trustProxy(pod *corev1.Pod) {
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if v.Projected == nil || !strings.HasPrefix(v.Name, "kube-api-access-") {
			continue
		}
		for j := range v.Projected.Sources {
			if cm := v.Projected.Sources[j].ConfigMap; cm != nil && cm.Name == "kube-root-ca.crt" {
				cm.Name = TrustBundleConfigMap
			}
		}
	}
}
