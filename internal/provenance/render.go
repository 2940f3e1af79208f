package provenance

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// timeFormat shows milliseconds: a script's writes come many a second.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// Formats are the output formats of the history, diff and bisect views.
var Formats = []string{"text", "json", "markdown"}

// RenderOptions choose what a history shows.
type RenderOptions struct {
	// Objects prints the object at each version (--spec).
	Objects bool
}

// WriteHistory prints a history as text, JSON or Markdown.
func WriteHistory(w io.Writer, format string, h *History, opts RenderOptions) error {
	switch format {
	case "json":
		out := *h
		if !opts.Objects {
			out.Versions = make([]Version, len(h.Versions))
			for i, v := range h.Versions {
				v.Object = nil
				out.Versions[i] = v
			}
		}
		return writeJSON(w, out)
	case "markdown", "md":
		fmt.Fprintf(w, "# History of %s\n\n", h.title())
		fmt.Fprintln(w, "| version | time | write | user | user agent | uid | object |")
		fmt.Fprintln(w, "|---:|---|---|---|---|---|---|")
		for _, v := range h.Versions {
			fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s |\n", v.Number, v.Time.Format(timeFormat), v.Write(),
				mdCell(v.User), mdCell(v.UserAgent), v.UID, mdCell(v.sourceText()))
		}
		if opts.Objects {
			for _, v := range h.Versions {
				fmt.Fprintf(w, "\n## Version %d: %s\n\n", v.Number, v.Write())
				if err := writeObject(w, v, "```yaml\n", "```\n"); err != nil {
					return err
				}
			}
		}
		return nil
	case "text", "":
		fmt.Fprintf(w, "%s\n", h.title())
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tTIME\tWRITE\tUSER\tUSER AGENT\tUID\tOBJECT")
		for _, v := range h.Versions {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Number, v.Time.Format(timeFormat), v.Write(),
				v.User, v.UserAgent, shortUID(v.UID), v.sourceText())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if opts.Objects {
			for _, v := range h.Versions {
				fmt.Fprintf(w, "\n--- version %d: %s\n", v.Number, v.Write())
				if err := writeObject(w, v, "", ""); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return fmt.Errorf("unknown output format %q: use one of %s", format, strings.Join(Formats, ", "))
}

// DiffResult is what the diff view prints.
type DiffResult struct {
	From    int      `json:"from"`
	To      int      `json:"to"`
	Changes []Change `json:"changes"`
}

// WriteDiff prints the changes between two versions.
func WriteDiff(w io.Writer, format string, h *History, d DiffResult) error {
	switch format {
	case "json":
		return writeJSON(w, d)
	case "markdown", "md":
		fmt.Fprintf(w, "# %s: version %d → %d\n\n", h.title(), d.From, d.To)
		fmt.Fprintln(w, "| field | change | old | new |")
		fmt.Fprintln(w, "|---|---|---|---|")
		for _, c := range d.Changes {
			fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", c.Path, c.Kind, mdCell(valueOrEmpty(c.Old, c.Kind == "added")), mdCell(valueOrEmpty(c.New, c.Kind == "removed")))
		}
		return nil
	case "text", "":
		fmt.Fprintf(w, "%s: version %d → %d, %d fields changed\n", h.title(), d.From, d.To, len(d.Changes))
		for _, c := range d.Changes {
			switch c.Kind {
			case "added":
				fmt.Fprintf(w, "+ %s: %s\n", c.Path, FormatValue(c.New))
			case "removed":
				fmt.Fprintf(w, "- %s: %s\n", c.Path, FormatValue(c.Old))
			default:
				fmt.Fprintf(w, "~ %s: %s → %s\n", c.Path, FormatValue(c.Old), FormatValue(c.New))
			}
		}
		return nil
	}
	return fmt.Errorf("unknown output format %q: use one of %s", format, strings.Join(Formats, ", "))
}

// BisectResult is what the bisect view prints; Version is nil when no
// version satisfies the conditions.
type BisectResult struct {
	Where   []string `json:"where"`
	Version *Version `json:"version"`
}

// WriteBisect prints the first version where the conditions hold.
func WriteBisect(w io.Writer, format string, h *History, r BisectResult) error {
	where := strings.Join(r.Where, ", ")
	switch format {
	case "json":
		if r.Version != nil {
			v := *r.Version
			v.Object = nil
			r.Version = &v
		}
		return writeJSON(w, r)
	case "markdown", "md", "text", "":
		if r.Version == nil {
			fmt.Fprintf(w, "%s: no version has %s\n", h.title(), where)
			return nil
		}
		v := r.Version
		fmt.Fprintf(w, "%s: version %d is the first with %s: %s by %s (%s) at %s\n", h.title(), v.Number, where,
			v.Write(), v.User, v.UserAgent, v.Time.Format(timeFormat))
		return nil
	}
	return fmt.Errorf("unknown output format %q: use one of %s", format, strings.Join(Formats, ", "))
}

func (h *History) title() string {
	resource := h.Resource
	if h.Group != "" {
		resource += "." + h.Group
	}
	if h.Namespace != "" {
		return fmt.Sprintf("%s %s/%s", resource, h.Namespace, h.Name)
	}
	return resource + " " + h.Name
}

// sourceText says where a version's object comes from, with the note.
func (v *Version) sourceText() string {
	if v.Note == "" {
		return string(v.Source)
	}
	return string(v.Source) + " (" + v.Note + ")"
}

func writeObject(w io.Writer, v Version, open, close string) error {
	if v.Object == nil {
		_, err := fmt.Fprintf(w, "(%s)\n", v.sourceText())
		return err
	}
	data, err := yaml.Marshal(v.Object)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s# object from the %s\n%s%s", open, v.sourceText(), data, close)
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func shortUID(uid string) string {
	if len(uid) > 8 {
		return uid[:8]
	}
	return uid
}

func valueOrEmpty(v any, empty bool) string {
	if empty {
		return ""
	}
	return FormatValue(v)
}

func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
