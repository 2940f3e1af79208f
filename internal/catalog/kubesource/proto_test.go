package kubesource

import (
	"slices"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// TestProtoNumbers checks field numbers against k8s.io/api's
// generated.proto: plain fields, names that differ from JSON's, and inline
// structs one and two messages deep.
func TestProtoNumbers(t *testing.T) {
	for _, release := range []string{"1.31", "1.37"} {
		s, err := catalog.LoadSchemas(release)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			op, path, property string
			number             int32
			in                 []int32
		}{
			{"createCoreV1NamespacedConfigMap", "", "data", 2, nil},
			{"createCoreV1NamespacedConfigMap", "metadata", "labels", 11, nil},
			{"createAppsV1NamespacedDeployment", "spec.template.spec.volumes[]", "hostPath", 1, []int32{2}},
			{"createAppsV1NamespacedDeployment", "spec.template.spec.containers[].readinessProbe", "httpGet", 2, []int32{1}},
			{"createAdmissionregistrationV1ValidatingWebhookConfiguration", "", "webhooks", 2, nil},
			{"createAdmissionregistrationV1ValidatingAdmissionPolicy", "spec.matchConstraints.excludeResourceRules[]", "apiGroups", 1, []int32{2, 2}},
			{"createApiextensionsV1CustomResourceDefinition", "spec.versions[].schema.openAPIV3Schema", "x-kubernetes-list-type", 42, nil},
		} {
			typ := s.Type(s.Bodies[c.op])
			if c.path != "" {
				var ok bool
				if typ, ok = s.FieldType(c.op, c.path); !ok {
					t.Fatalf("%s: no %s in %s", release, c.path, c.op)
				}
			}
			i := slices.IndexFunc(typ.Properties, func(p catalog.Property) bool { return p.Name == c.property })
			if i < 0 {
				t.Fatalf("%s: %s has no %s", release, typ.Name, c.property)
			}
			if p := typ.Properties[i]; p.Proto != c.number || !slices.Equal(p.ProtoIn, c.in) {
				t.Errorf("%s: %s.%s is field %d in %v, want %d in %v", release, typ.Name, c.property, p.Proto, p.ProtoIn, c.number, c.in)
			}
		}
	}
}
