package record

import (
	"encoding/json"
	"net/http"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/report"
)

// AdminHandler serves what the kubelet and Prometheus ask of the proxy:
// /healthz, /readyz and /metrics. It is served on the pod network, so it
// publishes counts only, never who the clients are; see ResultsHandler.
// metrics may be nil.
func AdminHandler(metrics *Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	// Ready as soon as it serves: the serving certificate and the catalog
	// are loaded before the listeners open.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	if metrics != nil {
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			_, _ = metrics.WriteTo(w)
		})
	}
	return mux
}

// ResultsHandler serves /results, the read-only coverage of everything
// recorded so far (?format=json|table|markdown, ?untested). The report names
// the pod's clients (service accounts, user agents), so it belongs on a
// listener only the pod itself reaches. shipper may be nil.
func ResultsHandler(rec *Recorder, shipper *Shipper) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /results", func(w http.ResponseWriter, r *http.Request) {
		rep := coverage.NewReport(rec.Matcher().Catalog(), rec.Total())
		format := r.URL.Query().Get("format")
		if format == "" || format == "json" {
			w.Header().Set("Content-Type", "application/json")
			var shipping *ShipperStats
			if shipper != nil {
				st := shipper.Stats()
				shipping = &st
			}
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(struct {
				*coverage.Report
				Shipping *ShipperStats `json:"shipping,omitempty"`
			}{rep, shipping})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := report.Write(w, format, rep, report.Options{Untested: r.URL.Query().Has("untested")}); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	return mux
}
