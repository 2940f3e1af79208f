package fields

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// protobufObjects are real objects of the kinds kubectl's generators and
// client-go's typed clients send as protobuf, with the operation that
// creates each.
func protobufObjects() []struct {
	op  string
	obj runtime.Object
} {
	meta := metav1.ObjectMeta{Name: "x", Namespace: "default", Labels: map[string]string{"app": "x", "empty": ""}, Annotations: map[string]string{"a": "b"}}
	container := corev1.Container{
		Name: "app", Image: "nginx:1.27", Args: []string{"-v", ""},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
		Env: []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "k"},
		}}},
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
		},
		ImagePullPolicy: corev1.PullIfNotPresent,
		SecurityContext: &corev1.SecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000)},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}},
			InitialDelaySeconds: 3,
		},
	}
	return []struct {
		op  string
		obj runtime.Object
	}{
		{"createCoreV1NamespacedConfigMap", &corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: meta,
			Data:       map[string]string{"a": "1", "b": ""},
			BinaryData: map[string][]byte{"bin": {0, 1, 2}},
			Immutable:  ptr.To(true),
		}},
		{"createAppsV1NamespacedDeployment", &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: meta,
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](3),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}},
				Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxSurge: ptr.To(intstr.FromString("25%")), MaxUnavailable: ptr.To(intstr.FromInt32(1)),
				}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}},
					Spec: corev1.PodSpec{
						Containers: []corev1.Container{container},
						Volumes: []corev1.Volume{
							{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}},
							{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						},
					},
				},
			},
		}},
		{"createCoreV1NamespacedService", &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: meta,
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeClusterIP,
				Selector: map[string]string{"app": "x"},
				Ports: []corev1.ServicePort{
					{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
					{Name: "named", Port: 81, TargetPort: intstr.FromString("http")},
				},
			},
		}},
		{"createCoreV1NamespacedPod", &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: meta,
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{container},
				Tolerations: []corev1.Toleration{{
					Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists,
					Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300),
				}},
				NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
			},
		}},
	}
}

// encodeProtobuf writes an object as client-go does with
// application/vnd.kubernetes.protobuf: the magic, then runtime.Unknown.
func encodeProtobuf(t testing.TB, obj runtime.Object) []byte {
	t.Helper()
	serializer := protobuf.NewSerializer(nil, nil)
	var buf bytes.Buffer
	if err := serializer.Encode(obj, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// jsonOnly are the paths the JSON of an object sets that its protobuf
// cannot: creationTimestamp, which Go writes as null for a new object.
func jsonOnly(path string) bool {
	return path == "metadata.creationTimestamp" || strings.HasSuffix(path, ".metadata.creationTimestamp")
}

// TestProtobufMatchesJSON walks real objects in both encodings: protobuf
// must set what JSON sets, but for the paths jsonOnly names.
func TestProtobufMatchesJSON(t *testing.T) {
	w := NewWalker(builtin(t))
	for _, c := range protobufObjects() {
		t.Run(c.op, func(t *testing.T) {
			jsonBody, err := json.Marshal(c.obj)
			if err != nil {
				t.Fatal(err)
			}
			want, err := w.Walk(c.op, Object, jsonBody)
			if err != nil {
				t.Fatal(err)
			}
			got, err := w.Walk(c.op, Protobuf, encodeProtobuf(t, c.obj))
			if err != nil {
				t.Fatal(err)
			}
			wantSet := slices.DeleteFunc(slices.Clone(want.Set), jsonOnly)
			if !slices.Equal(got.Set, wantSet) {
				t.Errorf("protobuf sets\n%s\nJSON sets\n%s\nonly protobuf: %q\nonly JSON: %q", strings.Join(got.Set, "\n"), strings.Join(wantSet, "\n"),
					difference(got.Set, wantSet), difference(wantSet, got.Set))
			}
			if len(got.Unknown) > 0 || len(got.IllTyped) > 0 || len(want.Unknown) > 0 || len(want.IllTyped) > 0 {
				t.Errorf("protobuf unknown %q ill-typed %q; JSON unknown %q ill-typed %q", got.Unknown, got.IllTyped, want.Unknown, want.IllTyped)
			}
			for _, path := range []string{"apiVersion", "kind", "metadata.labels{}"} {
				if !slices.Contains(got.Set, path) {
					t.Errorf("protobuf does not set %s", path)
				}
			}
		})
	}
}

func difference(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// appendField appends a protobuf field to a message.
func appendField(b []byte, number int, wire int, value []byte) []byte {
	b = appendVarint(b, uint64(number)<<3|uint64(wire))
	if wire == wireBytes {
		b = appendVarint(b, uint64(len(value)))
	}
	return append(b, value...)
}

func appendVarint(b []byte, x uint64) []byte {
	for x >= 0x80 {
		b = append(b, byte(x)|0x80)
		x >>= 7
	}
	return append(b, byte(x))
}

// envelope wraps an object's message as runtime.Unknown.
func envelope(apiVersion, kind string, raw []byte) []byte {
	typeMeta := appendField(appendField(nil, 1, wireBytes, []byte(apiVersion)), 2, wireBytes, []byte(kind))
	return append([]byte("k8s\x00"), appendField(appendField(nil, 1, wireBytes, typeMeta), 2, wireBytes, raw)...)
}

// TestProtobufUnknownAndIllTyped checks field numbers the schema lacks and
// values of the wrong wire type.
func TestProtobufUnknownAndIllTyped(t *testing.T) {
	w := NewWalker(builtin(t))
	// ConfigMap: metadata 1 {name 1, generation 7}, data 2, immutable 4.
	metadata := appendField(nil, 1, wireBytes, []byte("x"))
	metadata = appendField(metadata, 7, wireBytes, []byte("not a varint")) // generation is an integer
	metadata = appendField(metadata, 99, wireVarint, []byte{1})
	raw := appendField(nil, 1, wireBytes, metadata)
	raw = appendField(raw, 4, wireBytes, []byte("yes")) // immutable is a boolean
	raw = appendField(raw, 17, wireVarint, []byte{0})
	r, err := w.Walk("createCoreV1NamespacedConfigMap", Protobuf, envelope("v1", "ConfigMap", raw))
	if err != nil {
		t.Fatal(err)
	}
	want := Result{
		Set:      []string{"apiVersion", "immutable", "kind", "metadata", "metadata.generation", "metadata.name"},
		Unknown:  []string{"#17", "metadata.#99"},
		IllTyped: []string{"immutable", "metadata.generation"},
	}
	if !slices.Equal(r.Set, want.Set) || !slices.Equal(r.Unknown, want.Unknown) || !slices.Equal(r.IllTyped, want.IllTyped) {
		t.Errorf("got %+v, want %+v", r, want)
	}
}

// TestProtobufMalformed checks that broken bodies are ErrMalformed.
func TestProtobufMalformed(t *testing.T) {
	w := NewWalker(builtin(t))
	good := encodeProtobuf(t, protobufObjects()[0].obj)
	for name, body := range map[string][]byte{
		"empty":            nil,
		"no magic":         []byte(`{"kind":"ConfigMap"}`),
		"magic only":       []byte("k8s\x00"),
		"cut":              good[:len(good)-3],
		"bad varint":       append([]byte("k8s\x00"), 0x80, 0x80),
		"group wire type":  append([]byte("k8s\x00"), 1<<3|3),
		"field number 0":   append([]byte("k8s\x00"), 0<<3|0, 1),
		"content encoding": append(slices.Clone(good), appendField(nil, 3, wireBytes, []byte("gzip"))...),
		"broken object":    envelope("v1", "ConfigMap", []byte{1<<3 | 2, 10, 1}),
	} {
		if _, err := w.Walk("createCoreV1NamespacedConfigMap", Protobuf, body); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzWalkProtobuf feeds arbitrary bytes, after the magic, as protobuf
// bodies of each object of protobufObjects: the walker must never panic,
// fail only with ErrMalformed and return sorted lists without repeats.
func FuzzWalkProtobuf(f *testing.F) {
	objects := protobufObjects()
	for _, c := range objects {
		f.Add(bytes.TrimPrefix(encodeProtobuf(f, c.obj), []byte("k8s\x00")))
	}
	w := NewWalker(builtin(f))
	f.Fuzz(func(t *testing.T, body []byte) {
		body = append([]byte("k8s\x00"), body...)
		for _, c := range objects {
			r, err := w.Walk(c.op, Protobuf, body)
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: error %v is not ErrMalformed", c.op, err)
			}
			for _, list := range [][]string{r.Set, r.Unknown, r.IllTyped} {
				if !slices.IsSorted(list) || len(slices.Compact(slices.Clone(list))) != len(list) {
					t.Fatalf("%s: list not sorted and unique: %q", c.op, list)
				}
			}
		}
	})
}
