package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/targets"
)

// Path is where the pod webhook is served.
const Path = "/mutate-v1-pod"

// The configuration controller-gen writes to config/webhook. failurePolicy
// Ignore: when the operator is down, pods are created unrecorded, never
// blocked.
// +kubebuilder:webhook:path=/mutate-v1-pod,mutating=true,failurePolicy=ignore,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=pods.snoop.apisnoop.dev,admissionReviewVersions=v1,timeoutSeconds=3,reinvocationPolicy=IfNeeded

// +kubebuilder:rbac:groups=snoop.apisnoop.dev,resources=snoopsessions,verbs=get;list;watch

// PodInjector is the admission handler for pod creation: it injects the
// recording proxy into pods that an active SnoopSession selects. Whatever goes
// wrong, it admits the pod unchanged and says why in a warning (fail open).
type PodInjector struct {
	// Client reads from the manager's cache: SnoopSessions (with
	// targets.NamespaceIndex), Namespaces, and the operator's own
	// ConfigMaps and Secrets in the pod's namespace.
	Client  client.Reader
	Decoder admission.Decoder
	// Image holds /apisnoop and /snoop-proxy.
	Image string
	// CollectorURL is where sidecars ship deltas; empty keeps them local.
	CollectorURL string
	// Skip lists namespaces never injected: the operator's own and the
	// system's, whose pods the API server must not depend on the operator
	// for.
	Skip []string
	// Now is the clock sessions' stop times are read against; nil is
	// time.Now.
	Now func() time.Time
}

// Handle decides on one pod.
func (h *PodInjector) Handle(ctx context.Context, req admission.Request) admission.Response {
	log := ctrl.LoggerFrom(ctx)
	if slices.Contains(h.Skip, req.Namespace) {
		return admission.Allowed("namespace is never recorded")
	}
	pod := &corev1.Pod{}
	if err := h.Decoder.Decode(req, pod); err != nil {
		return admitUnchanged(log, req, fmt.Errorf("decode pod: %w", err))
	}
	// The webhook configuration's selectors leave these out already; the
	// checks hold when it was edited. A hostNetwork pod's redirect would
	// capture the node's own connections to the API server.
	if _, ignored := pod.Labels[snoopv1alpha1.IgnoreLabel]; ignored {
		return admission.Allowed("pod opted out with " + snoopv1alpha1.IgnoreLabel)
	}
	if pod.Spec.HostNetwork {
		return admission.Allowed("hostNetwork pods are never recorded")
	}
	in, found, err := h.injectionFor(ctx, req.Namespace, pod)
	if err != nil {
		return admitUnchanged(log, req, err)
	}
	if !found {
		return admission.Allowed("no active SnoopSession selects this pod")
	}
	if err := h.trustInPlace(ctx, req.Namespace, in); err != nil {
		return admitUnchanged(log, req, err)
	}
	if !Inject(pod, in) {
		return admission.Allowed("already recorded")
	}
	mutated, err := json.Marshal(pod)
	if err != nil {
		return admitUnchanged(log, req, fmt.Errorf("encode pod: %w", err))
	}
	log.V(1).Info("Injecting the recording proxy", "pod", klog.KRef(req.Namespace, podName(req, pod)), "session", in.Session, "interception", in.Mode)
	return admission.PatchResponseFromRaw(req.Object.Raw, mutated)
}

// injectionFor finds the session that records the pod: the oldest active
// session that selects it.
func (h *PodInjector) injectionFor(ctx context.Context, ns string, pod *corev1.Pod) (Injection, bool, error) {
	sessions, err := targets.SessionsFor(ctx, h.Client, ns)
	if err != nil {
		return Injection{}, false, err
	}
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	var nsLabels map[string]string
	for i := range sessions {
		s := &sessions[i]
		if !targets.Injecting(s, now) {
			continue
		}
		sel, err := targets.New(s)
		if err != nil {
			continue // the controller reports it on the session
		}
		if sel.SelectsByNamespaceLabels() && nsLabels == nil {
			var namespace corev1.Namespace
			if err := h.Client.Get(ctx, client.ObjectKey{Name: ns}, &namespace); err != nil {
				return Injection{}, false, fmt.Errorf("get namespace %s: %w", ns, err)
			}
			nsLabels = namespace.Labels
			if nsLabels == nil {
				nsLabels = map[string]string{}
			}
		}
		if !sel.Matches(ns, nsLabels, pod.Labels) {
			continue
		}
		in := Injection{
			Session:      s.Namespace + "/" + s.Name,
			Release:      s.Spec.KubernetesRelease,
			Mode:         s.Spec.Interception,
			Image:        h.Image,
			CollectorURL: h.CollectorURL,
		}
		in.KeepBodies = s.Spec.Recording.RequestBodies
		if m := s.Spec.Recording.MaxBodyBytes; m != nil {
			in.MaxBodyBytes = *m
		}
		return in, true, nil
	}
	return Injection{}, false, nil
}

// trustInPlace checks that the objects an injected pod mounts are in its
// namespace: a pod that mounted a missing Secret would never start, so
// until the operator has written them the pod is admitted unrecorded.
func (h *PodInjector) trustInPlace(ctx context.Context, ns string, in Injection) error {
	required := []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: ProxyCertSecret}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: TrustBundleConfigMap}},
	}
	if in.Release == snoopv1alpha1.ClusterRelease {
		required = append(required, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: CatalogConfigMap}})
	}
	for _, obj := range required {
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: obj.GetName()}, obj); err != nil {
			return fmt.Errorf("the operator has not written %s yet in namespace %s: %w", obj.GetName(), ns, err)
		}
	}
	return nil
}

// admitUnchanged is the fail-open answer.
func admitUnchanged(log logr.Logger, req admission.Request, err error) admission.Response {
	log.Error(err, "Admitting pod unrecorded", "namespace", req.Namespace, "name", req.Name)
	return admission.Allowed("").WithWarnings("apisnoop: pod admitted unrecorded: " + err.Error())
}

func podName(req admission.Request, pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	if req.Name != "" {
		return req.Name
	}
	return pod.GenerateName
}
