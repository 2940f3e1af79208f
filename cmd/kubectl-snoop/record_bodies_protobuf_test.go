package main

import "testing"

// TestRecordBodiesProtobuf records kubectl 1.37's generators, which send
// their objects as application/vnd.kubernetes.protobuf: their bodies get
// field coverage from the schemas' protobuf field numbers. The same object
// in JSON would also set metadata.creationTimestamp (written as null), so
// its absence shows the body was read as protobuf.
func TestRecordBodiesProtobuf(t *testing.T) {
	cp := sharedControlPlane.Get(t)
	kubeconfig := clientCertKubeconfig(t)
	namespace, err := cp.Namespace(t.Context(), "protobuf", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := recordBodies(t, kubeconfig, namespace, nil, 0, "create", "configmap", "x", "--from-literal=a=1")
	checkFields(t, got, map[string]wantFields{
		"createCoreV1NamespacedConfigMap": {bodies: 1, set: []string{
			"apiVersion", "kind", "metadata", "metadata.name", "metadata.namespace", "data", "data{}",
		}},
	})
}
