package catalog

import "testing"

func TestVersionLevel(t *testing.T) {
	tests := []struct {
		version string
		level   Level
		ok      bool
	}{
		{"v1", Stable, true},
		{"v2", Stable, true},
		{"v10", Stable, true},
		{"v1beta1", Beta, true},
		{"v2beta2", Beta, true},
		{"v1alpha3", Alpha, true},
		{"v1alpha1", Alpha, true},
		{"", "", false},
		{"1", "", false},
		{"v", "", false},
		{"v0", "", false},
		{"v01", "", false},
		{"v1beta", "", false},
		{"v1beta0", "", false},
		{"v1beta1x", "", false},
		{"v1rc1", "", false},
		{"vbeta1", "", false},
		{"beta", "", false},
		{"2024-01-01", "", false},
	}
	for _, tt := range tests {
		level, ok := VersionLevel(tt.version)
		if level != tt.level || ok != tt.ok {
			t.Errorf("VersionLevel(%q) = %q, %v; want %q, %v", tt.version, level, ok, tt.level, tt.ok)
		}
	}
}

func TestShapeOf(t *testing.T) {
	tests := []struct {
		path string
		want pathShape
	}{
		{"/api/v1/namespaces/{namespace}/pods/{name}",
			pathShape{Version: "v1", ResourcePath: true, Resource: "pods", Namespaced: true}},
		{"/api/v1/namespaces/{namespace}/pods/{name}/exec",
			pathShape{Version: "v1", ResourcePath: true, Resource: "pods", Subresource: "exec", Namespaced: true}},
		{"/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path}",
			pathShape{Version: "v1", ResourcePath: true, Resource: "pods", Subresource: "proxy", Namespaced: true}},
		{"/api/v1/nodes/{name}/proxy/{path}",
			pathShape{Version: "v1", ResourcePath: true, Resource: "nodes", Subresource: "proxy"}},
		{"/api/v1/namespaces/{name}/status",
			pathShape{Version: "v1", ResourcePath: true, Resource: "namespaces", Subresource: "status"}},
		{"/api/v1/namespaces/{name}/finalize",
			pathShape{Version: "v1", ResourcePath: true, Resource: "namespaces", Subresource: "finalize"}},
		{"/api/v1/namespaces",
			pathShape{Version: "v1", ResourcePath: true, Resource: "namespaces"}},
		{"/api/v1/pods",
			pathShape{Version: "v1", ResourcePath: true, Resource: "pods"}},
		{"/api/v1/watch/namespaces/{namespace}/pods",
			pathShape{Version: "v1", ResourcePath: true, Resource: "pods", Namespaced: true, LegacyWatch: true}},
		{"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
			pathShape{Group: "apps", Version: "v1", ResourcePath: true, Resource: "deployments", Subresource: "scale", Namespaced: true}},
		{"/apis/example.com/v1beta1/widgets",
			pathShape{Group: "example.com", Version: "v1beta1", ResourcePath: true, Resource: "widgets"}},
		{"/apis/apps/v1/", pathShape{Group: "apps", Version: "v1"}},
		{"/api/v1/", pathShape{Version: "v1"}},
		{"/apis/apps/", pathShape{Group: "apps", GroupDiscovery: true}},
		{"/apis/", pathShape{}},
		{"/api/", pathShape{}},
		{"/version/", pathShape{}},
		{"/openid/v1/jwks/", pathShape{}},
		{"/.well-known/openid-configuration/", pathShape{}},
		{"/logs/{logpath}", pathShape{}},
	}
	for _, tt := range tests {
		if got := shapeOf(tt.path); got != tt.want {
			t.Errorf("shapeOf(%q) =\n  %+v\nwant\n  %+v", tt.path, got, tt.want)
		}
	}
}

// TestLevelDerivation checks levels in context: discovery endpoints depend
// on the versions the document serves.
func TestLevelDerivation(t *testing.T) {
	raws := []RawOperation{
		{ID: "getBetaonlyAPIGroup", Method: "get", Path: "/apis/betaonly.example.com/"},
		{ID: "getBetaonlyV1beta1APIResources", Method: "get", Path: "/apis/betaonly.example.com/v1beta1/"},
		{ID: "listBetaonlyV1beta1Thing", Method: "get", Path: "/apis/betaonly.example.com/v1beta1/things"},
		{ID: "listBetaonlyV1alpha1Thing", Method: "get", Path: "/apis/betaonly.example.com/v1alpha1/things"},
		{ID: "getAppsAPIGroup", Method: "get", Path: "/apis/apps/"},
		{ID: "listAppsV1Deployment", Method: "get", Path: "/apis/apps/v1/deployments"},
		{ID: "listAppsV1beta2Deployment", Method: "get", Path: "/apis/apps/v1beta2/deployments"},
		{ID: "getAlphaonlyAPIGroup", Method: "get", Path: "/apis/alphaonly.example.com/"},
		{ID: "listAlphaonlyV1alpha3Thing", Method: "get", Path: "/apis/alphaonly.example.com/v1alpha3/things"},
		{ID: "listAutoscalingV2HPA", Method: "get", Path: "/apis/autoscaling/v2/horizontalpodautoscalers"},
		{ID: "listAutoscalingV2beta2HPA", Method: "get", Path: "/apis/autoscaling/v2beta2/horizontalpodautoscalers"},
		{ID: "getCoreAPIVersions", Method: "get", Path: "/api/"},
		{ID: "getAPIVersions", Method: "get", Path: "/apis/"},
		{ID: "getAPIVersionsNoSlash", Method: "get", Path: "/apis"},
		{ID: "getCoreV1APIResources", Method: "get", Path: "/api/v1/"},
		{ID: "getCodeVersion", Method: "get", Path: "/version/"},
		{ID: "getServiceAccountIssuerOpenIDKeyset", Method: "get", Path: "/openid/v1/jwks/"},
		{ID: "listNotAVersionThing", Method: "get", Path: "/apis/odd.example.com/v1rc1/things"},
		// A path that merely contains "beta" or "alpha" outside its version.
		{ID: "listBetamaxV1Tape", Method: "get", Path: "/apis/betamax.example.com/v1/alphabets"},
	}
	want := map[string]struct {
		level Level
		class Class
	}{
		"getBetaonlyAPIGroup":                 {Beta, ClassDiscovery},
		"getBetaonlyV1beta1APIResources":      {Beta, ClassDiscovery},
		"listBetaonlyV1beta1Thing":            {Beta, ClassResource},
		"listBetaonlyV1alpha1Thing":           {Alpha, ClassResource},
		"getAppsAPIGroup":                     {Stable, ClassDiscovery},
		"listAppsV1Deployment":                {Stable, ClassResource},
		"listAppsV1beta2Deployment":           {Beta, ClassResource},
		"getAlphaonlyAPIGroup":                {Alpha, ClassDiscovery},
		"listAlphaonlyV1alpha3Thing":          {Alpha, ClassResource},
		"listAutoscalingV2HPA":                {Stable, ClassResource},
		"listAutoscalingV2beta2HPA":           {Beta, ClassResource},
		"getCoreAPIVersions":                  {Stable, ClassDiscovery},
		"getAPIVersions":                      {Stable, ClassDiscovery},
		"getAPIVersionsNoSlash":               {Stable, ClassDiscovery},
		"getCoreV1APIResources":               {Stable, ClassDiscovery},
		"getCodeVersion":                      {Stable, ClassNonResource},
		"getServiceAccountIssuerOpenIDKeyset": {Stable, ClassNonResource},
		"listNotAVersionThing":                {Alpha, ClassResource},
		"listBetamaxV1Tape":                   {Stable, ClassResource},
	}
	c := build(raws, "1.99", ConformanceLists{})
	for id, w := range want {
		op, ok := c.Operation(id)
		if !ok {
			t.Errorf("%s missing", id)
			continue
		}
		if op.Level != w.level || op.Class != w.class {
			t.Errorf("%s: level %q class %q, want %q %q", id, op.Level, op.Class, w.level, w.class)
		}
	}
}

func TestEligibilityRules(t *testing.T) {
	raws := []RawOperation{
		{ID: "readCoreV1NamespacedPod", Method: "get", Path: "/api/v1/namespaces/{namespace}/pods/{name}", Action: "get"},
		{ID: "watchCoreV1NamespacedPod", Method: "get", Path: "/api/v1/watch/namespaces/{namespace}/pods/{name}", Action: "watch",
			Description: "watch changes to an object of kind Pod. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."},
		{ID: "watchUndeclaredThing", Method: "get", Path: "/api/v1/watch/things", Action: "watchlist"},
		{ID: "listFlaggedDeprecated", Method: "get", Path: "/api/v1/flagged", Deprecated: true},
		{ID: "listBatchV1beta1CronJob", Method: "get", Path: "/apis/batch/v1beta1/cronjobs"},
		{ID: "createCoreV1Node", Method: "post", Path: "/api/v1/nodes"},
		{ID: "readCoreV1NamespacedPodResize", Method: "get", Path: "/api/v1/namespaces/{namespace}/pods/{name}/resize"},
		{ID: "getServiceAccountIssuerOpenIDConfiguration", Method: "get", Path: "/.well-known/openid-configuration/"},
		{ID: "getCodeVersion", Method: "get", Path: "/version/"},
	}
	lists := ConformanceLists{
		Ineligible: map[string]string{"createCoreV1Node": "Kubernetes distribution would reasonably not allow this action via the API"},
		Pending:    []string{"readCoreV1NamespacedPodResize"},
	}
	want := map[string]struct {
		eligibility Eligibility
		reason      string
	}{
		"readCoreV1NamespacedPod":                    {Eligible, ""},
		"watchCoreV1NamespacedPod":                   {Ineligible, "deprecated"},
		"watchUndeclaredThing":                       {Ineligible, "watch operation"},
		"listFlaggedDeprecated":                      {Ineligible, "deprecated"},
		"listBatchV1beta1CronJob":                    {Ineligible, "beta API"},
		"createCoreV1Node":                           {Ineligible, lists.Ineligible["createCoreV1Node"]},
		"readCoreV1NamespacedPodResize":              {Pending, ""},
		"getServiceAccountIssuerOpenIDConfiguration": {Ineligible, "counted as beta by APISnoop"},
		"getCodeVersion":                             {Eligible, ""},
	}
	c := build(raws, "1.99", lists)
	for id, w := range want {
		op, _ := c.Operation(id)
		if op.Eligibility != w.eligibility || op.IneligibleReason != w.reason {
			t.Errorf("%s: %q %q, want %q %q", id, op.Eligibility, op.IneligibleReason, w.eligibility, w.reason)
		}
	}
	if op, _ := c.Operation("watchCoreV1NamespacedPod"); !op.Deprecated || !op.Watch {
		t.Errorf("watchCoreV1NamespacedPod: deprecated %v watch %v, want both", op.Deprecated, op.Watch)
	}
	if got := c.Summary(); got != (Summary{Operations: 9, Stable: 6, Beta: 1, Deprecated: 2, Eligible: 2, Pending: 1, Ineligible: 6}) {
		t.Errorf("Summary() = %+v", got)
	}
}

func TestNormalizeRelease(t *testing.T) {
	for in, want := range map[string]string{
		"1.36": "1.36", "v1.36": "1.36", "v1.36.3": "1.36", "1.36.3": "1.36",
		"v1.36.3-gke.1200": "1.36", "v1.36.0-rc.1": "1.36", "v1.36+k3s1": "1.36",
	} {
		if got := NormalizeRelease(in); got != want {
			t.Errorf("NormalizeRelease(%q) = %q, want %q", in, got, want)
		}
	}
}
