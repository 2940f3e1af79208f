package provenance

import (
	"bytes"
	"encoding/json"
	"io"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

// WritesLog writes a session's recorded writes (coverage.Delta.Writes) as
// an audit log, one audit.k8s.io/v1 Event per line at ResponseComplete,
// at the level their bodies tell (RequestResponse with the answer's
// object, Request with the request's only), so that Read tells their
// history as it does an API server's log's. This is what the results API
// serves at /sessions/NS/NAME/writes.
func WritesLog(w io.Writer, writes []coverage.Write) error {
	enc := json.NewEncoder(w)
	for i := range writes {
		if err := enc.Encode(auditEvent(&writes[i])); err != nil {
			return err
		}
	}
	return nil
}

// WritesSource is WritesLog as a source for Read.
func WritesSource(name string, writes []coverage.Write) (audit.Source, error) {
	var buf bytes.Buffer
	if err := WritesLog(&buf, writes); err != nil {
		return audit.Source{}, err
	}
	data := buf.Bytes()
	return audit.Source{Name: name, Size: int64(len(data)), Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}}, nil
}

func auditEvent(w *coverage.Write) *auditv1.Event {
	ev := &auditv1.Event{
		TypeMeta:   metav1.TypeMeta{APIVersion: "audit.k8s.io/v1", Kind: "Event"},
		Level:      auditv1.LevelRequest,
		AuditID:    types.UID(w.ID),
		Stage:      auditv1.StageResponseComplete,
		RequestURI: w.RequestURI,
		Verb:       w.Verb,
		UserAgent:  w.UserAgent,
		ObjectRef: &auditv1.ObjectReference{
			Resource: w.Resource, Namespace: w.Namespace, Name: w.Name,
			APIGroup: w.Group, APIVersion: w.Version, Subresource: w.Subresource,
		},
		ResponseStatus:           &metav1.Status{Code: int32(w.Status)},
		RequestReceivedTimestamp: metav1.NewMicroTime(w.Received),
		StageTimestamp:           metav1.NewMicroTime(w.Completed),
	}
	ev.User.Username = w.User
	if w.Request != nil {
		ev.RequestObject = &runtime.Unknown{Raw: w.Request, ContentType: runtime.ContentTypeJSON}
	}
	if w.Response != nil {
		ev.Level = auditv1.LevelRequestResponse
		ev.ResponseObject = &runtime.Unknown{Raw: w.Response, ContentType: runtime.ContentTypeJSON}
	}
	return ev
}
