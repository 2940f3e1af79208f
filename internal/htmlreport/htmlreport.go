// Package htmlreport renders coverage as one self-contained HTML page: a
// sunburst of the release's operations by level, group, version, resource
// and operation, coloured hit, eligible-untested or ineligible, summary
// cards per level, and sortable, filterable tables; when the report holds
// field coverage (request bodies were recorded), cards of fields hit per
// level and tables of the operations' fields and of their unknown and
// ill-typed field paths, else a "not measured" note. Everything it needs is
// inside the page (the charting library, its script and style), so the page
// opens without network access, from a file or from the manager.
//
// The page reads a coverage.Report as its JSON rendering has it, so the same
// page serves a report written once (the data embedded) and a live session
// (the data fetched from the results API on an interval).
package htmlreport

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

// The charting library, built by web/report-ui (make ui) from pinned npm
// packages; its licences are in assets/echarts.LICENSE and
// assets/echarts.NOTICE.
//
//go:embed assets/echarts.min.js
var echartsJS string

//go:embed app.js
var appJS string

//go:embed app.css
var appCSS string

//go:embed page.html.tmpl
var pageHTML string

var pageTemplate = template.Must(template.New("page").Parse(pageHTML))

// Page is what one HTML page shows.
type Page struct {
	// Title heads the page; empty: "API coverage of Kubernetes RELEASE".
	Title string
	// Source says where the requests came from: the audit logs read, the
	// command recorded, the SnoopSession.
	Source string
	// Generated is when the page was written; zero leaves it out.
	Generated time.Time
}

// config is what the page's script reads besides the data.
type config struct {
	Kind   string `json:"kind"` // "report", "diff" or "live"
	Title  string `json:"title"`
	Source string `json:"source"`
	// Generated is RFC 3339, or empty.
	Generated string `json:"generated,omitempty"`
	// ResultsURL and RefreshSeconds are a live page's: where it fetches the
	// coverage.Report as JSON (relative to the page) and how often.
	ResultsURL     string `json:"resultsURL,omitempty"`
	RefreshSeconds int    `json:"refreshSeconds,omitempty"`
	TokenHeader    string `json:"tokenHeader,omitempty"`
}

type pageData struct {
	Config  config
	Data    any
	Title   string
	Echarts template.JS
	App     template.JS
	CSS     template.CSS
}

// Write renders r as a self-contained page.
func Write(w io.Writer, p Page, r *coverage.Report) error {
	if r == nil {
		return fmt.Errorf("render HTML report: no report")
	}
	if p.Title == "" {
		p.Title = "API coverage of Kubernetes " + r.Summary.Release
	}
	return write(w, p, config{Kind: "report"}, r)
}

// Live describes a page that shows a session's results as they change.
type Live struct {
	// ResultsURL is where the page fetches the coverage.Report as JSON, with
	// the bearer token the reader gives it; relative URLs resolve against
	// the page's own.
	ResultsURL string
	// Refresh is how often it fetches; at least a second.
	Refresh time.Duration
	// TokenHeader is the request header that carries the token; empty:
	// Authorization, as "Bearer TOKEN".
	TokenHeader string
}

// WriteLive renders the page of a live session. It holds no results: the
// script fetches them from l.ResultsURL with the reader's token, so the
// page itself needs no authorisation and everything it shows passes the
// results API's.
func WriteLive(w io.Writer, p Page, l Live) error {
	c := config{Kind: "live", ResultsURL: l.ResultsURL, RefreshSeconds: int(max(l.Refresh, time.Second) / time.Second), TokenHeader: l.TokenHeader}
	return write(w, p, c, nil)
}

func write(w io.Writer, p Page, c config, data any) error {
	c.Title, c.Source = p.Title, p.Source
	if !p.Generated.IsZero() {
		c.Generated = p.Generated.UTC().Format(time.RFC3339)
	}
	// The scripts and style are ours or the pinned library's, embedded at
	// build time: trusted. Data goes through html/template's JSON escaping.
	err := pageTemplate.Execute(w, pageData{
		Config: c, Data: data, Title: p.Title,
		Echarts: template.JS(echartsJS), App: template.JS(appJS), CSS: template.CSS(appCSS),
	})
	if err != nil {
		return fmt.Errorf("render HTML report: %w", err)
	}
	return nil
}
