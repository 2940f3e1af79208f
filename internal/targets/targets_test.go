package targets

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
)

func TestMatches(t *testing.T) {
	session := func(t snoopv1alpha1.Targets) *snoopv1alpha1.SnoopSession {
		return &snoopv1alpha1.SnoopSession{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a"}, Spec: snoopv1alpha1.SnoopSessionSpec{Targets: t}}
	}
	app := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "demo"}}
	tests := []struct {
		name      string
		targets   snoopv1alpha1.Targets
		ns        string
		nsLabels  map[string]string
		podLabels map[string]string
		want      bool
	}{
		{"every pod of the session's namespace", snoopv1alpha1.Targets{}, "team-a", nil, nil, true},
		{"not another namespace by default", snoopv1alpha1.Targets{}, "team-b", nil, nil, false},
		{"pod selector matches", snoopv1alpha1.Targets{PodSelector: app}, "team-a", nil, map[string]string{"app": "demo"}, true},
		{"pod selector does not match", snoopv1alpha1.Targets{PodSelector: app}, "team-a", nil, map[string]string{"app": "other"}, false},
		{"listed namespace", snoopv1alpha1.Targets{Namespaces: []string{"team-b"}}, "team-b", nil, nil, true},
		{"listed namespaces replace the session's", snoopv1alpha1.Targets{Namespaces: []string{"team-b"}}, "team-a", nil, nil, false},
		{"namespace selector matches", snoopv1alpha1.Targets{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"snoop": "on"}}}, "x", map[string]string{"snoop": "on"}, nil, true},
		{"namespace selector does not match", snoopv1alpha1.Targets{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"snoop": "on"}}}, "team-a", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := New(session(tt.targets))
			if err != nil {
				t.Fatal(err)
			}
			if got := sel.Matches(tt.ns, tt.nsLabels, tt.podLabels); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}
