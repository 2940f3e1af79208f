// Package browsertest opens kube-apisnoop's HTML pages in a real headless
// Chromium (Debian's chromium, installed by hack/install-chromium.sh) and
// reads what the page drew, for tests: the chart, the summary cards, the
// tables. It checks the rendered DOM, never the HTML source.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

// DefaultChromium is where Debian's chromium package puts the browser;
// $CHROMIUM names another.
const DefaultChromium = "/usr/bin/chromium"

// Chromium returns the browser's path. Without it a test skips, except
// when CI is set: there a browser test that does not run must fail.
func Chromium(t testing.TB) string {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	if path == "" {
		path = DefaultChromium
	}
	if _, err := exec.LookPath(path); err != nil {
		msg := fmt.Sprintf("no Chromium at %s (hack/install-chromium.sh installs it): %v", path, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// New starts a headless Chromium with a fresh profile for the test and
// returns a tab's context; the browser stops when the test ends. The flags
// keep it off the network: no background requests, updates, sync or QUIC,
// so that it only ever talks to what the test opens.
func New(t testing.TB) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(Chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first action starts the browser, under the allocator's context
	// (not the timeout's, which would stop the browser with it).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// Open navigates to url and waits until the page has drawn renders times
// (a live page draws again on each refresh).
func Open(t testing.TB, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	WaitRendered(t, ctx, 1)
}

// WaitRendered waits until the page has drawn at least n times.
func WaitRendered(t testing.TB, ctx context.Context, n int) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf("window.snoopReport && window.snoopReport.renders >= %d", n),
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(time.Minute)))
	if err != nil {
		status, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById('live-status')||{}).textContent || document.body.innerText.slice(0, 300)`))
		t.Fatalf("the page never drew (%d times): %v; it says: %s", n, err, status)
	}
}

// Chart is what the sunburst drew.
type Chart struct {
	// Width and Height are the SVG's rendered size in CSS pixels.
	Width, Height float64
	// Shapes counts the SVG's path elements: the slices.
	Shapes int
	// Leaves counts the leaf nodes of the ECharts instance's series data,
	// and States counts them by state (hit, untested, ineligible).
	Leaves int
	States map[string]int
}

const chartJS = `(() => {
  const box = document.getElementById('sunburst');
  const svg = box.querySelector('svg');
  const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const chart = echarts.getInstanceByDom(box);
  const states = {};
  let leaves = 0;
  const walk = (nodes) => (nodes || []).forEach(n => {
    if (n.children && n.children.length) { walk(n.children); return; }
    leaves++; states[n.state] = (states[n.state] || 0) + 1;
  });
  if (chart) walk(chart.getOption().series[0].data);
  return {Width: r.width, Height: r.height, Shapes: svg ? svg.querySelectorAll('path').length : 0, Leaves: leaves, States: states};
})()`

// ReadChart reads the sunburst from the page and its ECharts instance.
func ReadChart(t testing.TB, ctx context.Context) Chart {
	t.Helper()
	c, err := chromedp.Run(ctx, chromedp.Evaluate[Chart](chartJS))
	if err != nil {
		t.Fatalf("read the chart: %v", err)
	}
	return c
}

// Card is one summary card as the page shows it: data-field to text.
type Card map[string]string

// ReadCards reads the summary cards by their data-level.
func ReadCards(t testing.TB, ctx context.Context) map[string]Card {
	t.Helper()
	return readCards(t, ctx, "cards")
}

// ReadFieldCards reads the field coverage cards by their data-level.
func ReadFieldCards(t testing.TB, ctx context.Context) map[string]Card {
	t.Helper()
	return readCards(t, ctx, "field-cards")
}

func readCards(t testing.TB, ctx context.Context, box string) map[string]Card {
	t.Helper()
	cards, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]Card](fmt.Sprintf(`Object.fromEntries([...document.querySelectorAll('#%s .card')].map(c =>
	  [c.dataset.level, Object.fromEntries([...c.querySelectorAll('[data-field]')].map(f => [f.dataset.field, f.innerText]))]))`, box)))
	if err != nil {
		t.Fatalf("read the cards of #%s: %v", box, err)
	}
	return cards
}

// CheckCards fails the test unless the cards show the summary's numbers:
// hit, operations and percent (one decimal) of every level.
func CheckCards(t testing.TB, ctx context.Context, s coverage.Summary) {
	t.Helper()
	cards := ReadCards(t, ctx)
	for level, l := range map[string]coverage.LevelSummary{
		"stable": s.Stable, "beta": s.Beta, "alpha": s.Alpha, "eligible": s.Eligible, "conformanceHit": s.ConformanceHit,
	} {
		want := Card{"hit": fmt.Sprint(l.Hit), "operations": fmt.Sprint(l.Operations), "percent": fmt.Sprintf("%.1f%%", l.Percent)}
		if got := cards[level]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("card %s shows %v, the JSON report says %v", level, got, want)
		}
	}
}

// Rows returns the text of the rows a table shows, cells joined by tabs.
func Rows(t testing.TB, ctx context.Context, table string) []string {
	t.Helper()
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](fmt.Sprintf(`[...document.querySelectorAll('#%s-table tbody tr')].map(r => [...r.cells].map(c => c.innerText).join('\t'))`, table)))
	if err != nil {
		t.Fatalf("read table %s: %v", table, err)
	}
	return rows
}

// Filter types text into a table's filter box, as a person would (key
// events), and returns the rows it then shows.
func Filter(t testing.TB, ctx context.Context, table, text string) []string {
	t.Helper()
	input := "#" + table + "-filter"
	err := chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById('%s-filter').value = ''`, table)),
		chromedp.Focus(chromedp.CSS(input)),
		chromedp.SendKeys(chromedp.CSS(input), text),
	)
	if err != nil {
		t.Fatalf("filter table %s: %v", table, err)
	}
	return Rows(t, ctx, table)
}

// CheckFilter filters a table by text and fails the test unless it then
// shows exactly the rows that contain every word of text, want of them.
func CheckFilter(t testing.TB, ctx context.Context, table, text string, want int) {
	t.Helper()
	rows := Filter(t, ctx, table, text)
	if len(rows) != want {
		t.Errorf("table %s filtered by %q shows %d rows, want %d:\n%s", table, text, len(rows), want, strings.Join(rows, "\n"))
	}
	for _, r := range rows {
		for _, w := range strings.Fields(strings.ToLower(text)) {
			if !strings.Contains(strings.ToLower(r), w) {
				t.Errorf("table %s filtered by %q shows a row without %q: %s", table, text, w, r)
			}
		}
	}
	// Cleared, the filter shows every row again.
	clear := fmt.Sprintf(`(f => { f.value = ''; f.dispatchEvent(new Event('input')); })(document.getElementById('%s-filter'))`, table)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](clear)); err != nil {
		t.Fatalf("clear the filter of %s: %v", table, err)
	}
}

// Screenshot writes a PNG of the whole page into the test's artifact
// directory (kept with go test -artifacts) and logs its path.
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	// No focus ring or hover left over from the checks.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`)); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := t.ArtifactDir()
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return path
}

// CheckReport checks a report page open in the browser against the JSON
// report r: the chart drew every operation in its state, the cards show the
// summary's numbers, the tables list the operations hit and the eligible
// ones not hit, and filtering both by word (like "configmap", which must
// name an operation hit) keeps exactly the operations whose ID or path
// contains it.
func CheckReport(t testing.TB, ctx context.Context, r coverage.Report, word string) {
	t.Helper()
	chart := ReadChart(t, ctx)
	hit := len(r.Hit())
	if chart.Width < 300 || chart.Height < 300 || chart.Shapes < len(r.Operations) {
		t.Errorf("the chart drew %+v, want an SVG of at least 300x300 with a shape per operation (%d)", chart, len(r.Operations))
	}
	if chart.Leaves != len(r.Operations) || chart.States["hit"] != hit || chart.States["untested"] != len(r.Untested) {
		t.Errorf("the chart's data has %d leaves %v, want %d operations, %d hit, %d eligible untested",
			chart.Leaves, chart.States, len(r.Operations), hit, len(r.Untested))
	}
	CheckCards(t, ctx, r.Summary)
	if rows := Rows(t, ctx, "operations-hit"); len(rows) != hit {
		t.Errorf("the operations-hit table shows %d rows, want %d", len(rows), hit)
	}
	if rows := Rows(t, ctx, "eligible-untested"); len(rows) != len(r.Untested) {
		t.Errorf("the eligible-untested table shows %d rows, want %d", len(rows), len(r.Untested))
	}
	hitWord, untestedWord := 0, 0
	for _, op := range r.Operations {
		if !strings.Contains(strings.ToLower(op.ID+" "+op.Path+" "+op.Kind), strings.ToLower(word)) {
			continue
		}
		switch {
		case op.Hits > 0:
			hitWord++
		case op.Eligibility == catalog.Eligible:
			untestedWord++
		}
	}
	if hitWord == 0 {
		t.Errorf("no operation named %q was hit: nothing to filter", word)
	}
	CheckFilter(t, ctx, "operations-hit", word, hitWord)
	CheckFilter(t, ctx, "eligible-untested", word, untestedWord)
}

// CheckDiff checks a diff page open in the browser against d: the cards
// show each level's hits before and after, the chart drew every operation
// hit on either side in its state, and the gained and lost tables list
// d's operations.
func CheckDiff(t testing.TB, ctx context.Context, d DiffCounts) {
	t.Helper()
	cards := ReadCards(t, ctx)
	for level, l := range d.Levels {
		want := Card{"hitA": fmt.Sprint(l[0]), "hitB": fmt.Sprint(l[1]), "delta": fmt.Sprintf("%+d", l[1]-l[0])}
		if l[1] == l[0] {
			want["delta"] = "0"
		}
		if got := cards[level]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("card %s shows %v, want %v", level, got, want)
		}
	}
	chart := ReadChart(t, ctx)
	if chart.Width < 300 || chart.Height < 300 || chart.Leaves != d.Gained+d.Lost+d.Both ||
		chart.States["gained"] != d.Gained || chart.States["lost"] != d.Lost || chart.States["both"] != d.Both {
		t.Errorf("the chart drew %+v, want %d gained, %d lost, %d in both", chart, d.Gained, d.Lost, d.Both)
	}
	if rows := Rows(t, ctx, "gained"); len(rows) != d.Gained {
		t.Errorf("the gained table shows %d rows, want %d", len(rows), d.Gained)
	}
	if rows := Rows(t, ctx, "lost"); len(rows) != d.Lost {
		t.Errorf("the lost table shows %d rows, want %d", len(rows), d.Lost)
	}
	if d.FieldChanges == nil {
		if Shown(t, ctx, "field-changes") {
			t.Error("a diff without field data on both sides shows the field-changes table")
		}
		return
	}
	if got := Rows(t, ctx, "field-changes"); !sameRows(got, d.FieldChanges) {
		t.Errorf("table field-changes shows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(d.FieldChanges, "\n"))
	}
}

// DiffCounts is what a diff page must show: per level the hits before and
// after, and how many operations were gained, lost and hit in both.
// FieldChanges, when both sides have field data, are the rows of the
// field-changes table ("operation\tgained|lost\tpath"); nil when the page
// must not show it.
type DiffCounts struct {
	Levels             map[string][2]int
	Gained, Lost, Both int
	FieldChanges       []string
}

// Shown reports whether the element with the id is rendered (neither it
// nor an ancestor hidden).
func Shown(t testing.TB, ctx context.Context, id string) bool {
	t.Helper()
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(e => !!e && e.getClientRects().length > 0)(document.getElementById('%s'))`, id)))
	if err != nil {
		t.Fatalf("is #%s shown: %v", id, err)
	}
	return shown
}

// FieldRows are the rows the field coverage tables must show for r, as
// Rows reads them: field-operations (the operations some request body was
// seen for) and field-problems (their unknown and ill-typed paths).
func FieldRows(r coverage.Report) (ops, problems []string) {
	for _, op := range r.Operations {
		f := op.Fields
		if f == nil || f.Bodies == 0 {
			continue
		}
		level := string(op.Level)
		if op.Deprecated {
			level = "deprecated"
		}
		ops = append(ops, strings.Join([]string{op.ID, level, fmt.Sprint(f.Bodies), fmt.Sprint(f.Hit), fmt.Sprint(f.InSchema),
			fmt.Sprintf("%.1f%%", f.Percent), fmt.Sprint(len(f.Unknown)), fmt.Sprint(len(f.IllTyped))}, "\t"))
		for _, h := range f.Unknown {
			problems = append(problems, strings.Join([]string{op.ID, h.Path, "unknown", fmt.Sprint(h.Count)}, "\t"))
		}
		for _, h := range f.IllTyped {
			problems = append(problems, strings.Join([]string{op.ID, h.Path, "ill-typed", fmt.Sprint(h.Count)}, "\t"))
		}
	}
	return ops, problems
}

// CheckFields checks the field coverage section of a report page open in
// the browser against the JSON report r. Without field data the page must
// show the "not measured" placeholder and nothing else there. With it, the
// cards must show each level's fields hit, in schema, percent, operations
// and bodies, the tables exactly FieldRows(r), and filtering them by
// opWord and pathWord (when not empty) keep exactly the rows holding them.
func CheckFields(t testing.TB, ctx context.Context, r coverage.Report, opWord, pathWord string) {
	t.Helper()
	fs := r.Summary.Fields
	if fs == nil {
		if !Shown(t, ctx, "fields-placeholder") || Shown(t, ctx, "fields-measured") {
			t.Errorf("a report without field data: the placeholder is shown %v, field coverage %v; want only the placeholder",
				Shown(t, ctx, "fields-placeholder"), Shown(t, ctx, "fields-measured"))
		}
		return
	}
	if Shown(t, ctx, "fields-placeholder") || !Shown(t, ctx, "field-cards") {
		t.Errorf("a report with field data: the placeholder is shown %v, the field cards %v; want only the cards",
			Shown(t, ctx, "fields-placeholder"), Shown(t, ctx, "field-cards"))
	}
	cards := ReadFieldCards(t, ctx)
	for level, l := range map[string]coverage.FieldLevelSummary{"stable": fs.Stable, "beta": fs.Beta, "alpha": fs.Alpha, "eligible": fs.Eligible} {
		want := Card{"hit": fmt.Sprint(l.Hit), "inSchema": fmt.Sprint(l.InSchema), "percent": fmt.Sprintf("%.1f%%", l.Percent),
			"operations": fmt.Sprint(l.Operations), "bodies": fmt.Sprint(l.Bodies)}
		if got := cards[level]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("field card %s shows %v, the JSON report says %v", level, got, want)
		}
	}
	if len(cards) != 4 {
		t.Errorf("%d field cards, want 4 (stable, beta, alpha, eligible): %v", len(cards), cards)
	}
	wantOps, wantProblems := FieldRows(r)
	for table, want := range map[string][]string{"field-operations": wantOps, "field-problems": wantProblems} {
		got := Rows(t, ctx, table)
		if !sameRows(got, want) {
			t.Errorf("table %s shows\n%s\nthe JSON report says\n%s", table, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	for _, c := range []struct {
		table, word string
		rows        []string
	}{{"field-operations", opWord, wantOps}, {"field-problems", pathWord, wantProblems}} {
		if c.word == "" {
			continue
		}
		n := 0
		for _, row := range c.rows {
			if strings.Contains(strings.ToLower(row), strings.ToLower(c.word)) {
				n++
			}
		}
		if n == 0 || n == len(c.rows) {
			t.Errorf("%d of the %d rows of %s hold %q: filtering by it shows nothing", n, len(c.rows), c.table, c.word)
		}
		CheckFilter(t, ctx, c.table, c.word, n)
	}
}

func sameRows(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
