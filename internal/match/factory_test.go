package match

import (
	"flag"
	"io"
	"net/http"
	"net/url"
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"
)

// factory is kube-apiserver's RequestInfoFactory configuration.
var factory = &request.RequestInfoFactory{
	APIPrefixes:          sets.NewString("api", "apis"),
	GrouplessAPIPrefixes: sets.NewString("api"),
}

func TestMain(m *testing.M) {
	// The factory logs every query it fails to decode; the differential
	// tests feed it many on purpose.
	klog.InitFlags(nil)
	_ = flag.Set("logtostderr", "false")
	_ = flag.Set("alsologtostderr", "false")
	_ = flag.Set("stderrthreshold", "FATAL")
	klog.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// factoryInfo runs the real factory on a request built from the inputs.
func factoryInfo(method, path, rawQuery string) (RequestInfo, bool) {
	req := &http.Request{Method: method, URL: &url.URL{Path: path, RawQuery: rawQuery}}
	got, err := factory.NewRequestInfo(req)
	return RequestInfo{
		IsResourceRequest: got.IsResourceRequest,
		Path:              got.Path,
		Verb:              got.Verb,
		APIPrefix:         got.APIPrefix,
		APIGroup:          got.APIGroup,
		APIVersion:        got.APIVersion,
		Namespace:         got.Namespace,
		Resource:          got.Resource,
		Subresource:       got.Subresource,
		Name:              got.Name,
	}, err == nil
}

// checkAgainstFactory fails when NewRequestInfo and the factory disagree.
func checkAgainstFactory(t *testing.T, method, path, rawQuery string) {
	t.Helper()
	want, wantOK := factoryInfo(method, path, rawQuery)
	got, gotOK := NewRequestInfo(method, path, rawQuery)
	if got != want || gotOK != wantOK {
		t.Errorf("%s %q ?%q:\n got  %+v ok=%v\n want %+v ok=%v", method, path, rawQuery, got, gotOK, want, wantOK)
	}
}
