package audit

import (
	"errors"
	"io"
	"strings"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/match"
)

// Match matches one audit event against the release.
func Match(m *match.Matcher, ev *Event) match.Result {
	return m.MatchRequestURI(ev.Method(), ev.RequestURI)
}

// Client is the client an audit event names: its user and user agent.
// Service account users ("system:serviceaccount:ns:name") also fill the
// namespace and service account.
func Client(ev *Event) coverage.Client {
	c := coverage.Client{User: ev.User.Username, UserAgent: ev.UserAgent}
	if rest, ok := strings.CutPrefix(c.User, "system:serviceaccount:"); ok {
		if ns, sa, ok := strings.Cut(rest, ":"); ok {
			c.Namespace, c.ServiceAccount = ns, sa
		}
	}
	return c
}

// Analyze reads an audit log and aggregates its requests. progress, when
// set, is called every progressEvery lines with the stats so far.
func Analyze(r io.Reader, m *match.Matcher, d *coverage.Delta, progress func(Stats), onMalformed func(line int64, err error)) (Stats, error) {
	reader := NewReader(r)
	reader.OnMalformed = onMalformed
	var next int64 = progressEvery
	for {
		ev, err := reader.Next()
		if errors.Is(err, io.EOF) {
			return reader.Stats(), nil
		}
		if err != nil {
			return reader.Stats(), err
		}
		d.Add(coverage.NewHit(Match(m, ev), ev.Method(), ev.Code(), Client(ev)))
		if progress != nil && reader.stats.Lines >= next {
			progress(reader.Stats())
			next += progressEvery
		}
	}
}

const progressEvery = 100_000
