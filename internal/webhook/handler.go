package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/version"
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
// +kubebuilder:webhook:path=/mutate-v1-pod,mutating=true,failurePolicy=ignore,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=pods.snoop.apisnoop.dev,admissionReviewVersions=v1,timeoutSeconds=5,reinvocationPolicy=IfNeeded

// +kubebuilder:rbac:groups=snoop.apisnoop.dev,resources=snoopsessions,verbs=get;list;watch

// PodInjector is the admission handler for pod creation: it injects the
// recording proxy into pods that a ready SnoopSession selects. Whatever goes
// wrong, it admits the pod unchanged and says why in a warning (fail open).
type PodInjector struct {
	// Client reads SnoopSessions and Namespaces (the manager's cache).
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
	in, found, err := h.injectionFor(ctx, req.Namespace, pod)
	if err != nil {
		return admitUnchanged(log, req, err)
	}
	if !found {
		return admission.Allowed("no SnoopSession selects this pod")
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

// injectionFor finds the session that records the pod: the oldest ready,
// unsuspended session that selects it.
func (h *PodInjector) injectionFor(ctx context.Context, ns string, pod *corev1.Pod) (Injection, bool, error) {
	var sessions snoopv1alpha1.SnoopSessionList
	if err := h.Client.List(ctx, &sessions); err != nil {
		return Injection{}, false, fmt.Errorf("list SnoopSessions: %w", err)
	}
	slices.SortFunc(sessions.Items, func(a, b snoopv1alpha1.SnoopSession) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	var nsLabels map[string]string
	for i := range sessions.Items {
		s := &sessions.Items[i]
		if s.Spec.Suspend || s.DeletionTimestamp != nil || !meta.IsStatusConditionTrue(s.Status.Conditions, snoopv1alpha1.ConditionReady) {
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
			Release:      releaseOf(s),
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

// releaseOf is the release the sidecar matches against: the session's, or
// for "cluster" the minor version the controller found ("cluster v1.37.2"
// gives 1.37).
func releaseOf(s *snoopv1alpha1.SnoopSession) string {
	if s.Spec.KubernetesRelease != snoopv1alpha1.ClusterRelease {
		return s.Spec.KubernetesRelease
	}
	v, err := version.ParseGeneric(strings.TrimPrefix(s.Status.Release, snoopv1alpha1.ClusterRelease+" "))
	if err != nil {
		return s.Status.Release
	}
	return fmt.Sprintf("%d.%d", v.Major(), v.Minor())
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
