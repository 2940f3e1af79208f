package main

import (
	"bufio"
	"encoding/json"
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines
// joined.
type instruction struct {
	Cmd  string // upper case: FROM, COPY, ...
	Args string
	Line int
}

// stage is the instructions from one FROM to the next.
type stage struct {
	Base, Name string
	Body       []instruction
}

// parseDockerfile splits a Dockerfile into stages. It knows what our
// Dockerfile uses: comments at the start of a line, backslash
// continuations, FROM [--platform=P] IMAGE [AS NAME].
func parseDockerfile(t *testing.T, file string) []stage {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		stages  []stage
		pending strings.Builder
		start   int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && pending.Len() == 0) {
			continue
		}
		if pending.Len() == 0 {
			start = n
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(pending.String()), " ")
		pending.Reset()
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start}
		if in.Cmd == "FROM" {
			var words []string
			for _, w := range strings.Fields(in.Args) {
				if !strings.HasPrefix(w, "--") {
					words = append(words, w)
				}
			}
			st := stage{Base: words[0]}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				st.Name = words[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].Body = append(stages[len(stages)-1].Body, in)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

// words splits shell-like arguments on spaces, keeping double-quoted text
// together and dropping the quotes.
func words(s string) []string {
	var (
		out    []string
		cur    strings.Builder
		quoted bool
		inWord bool
	)
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// keyValues reads KEY=VALUE words (LABEL, ENV, ARG).
func keyValues(t *testing.T, in instruction) map[string]string {
	t.Helper()
	kv := map[string]string{}
	for _, w := range words(in.Args) {
		k, v, ok := strings.Cut(w, "=")
		if !ok && in.Cmd != "ARG" {
			t.Fatalf("Dockerfile line %d: %s %q is not KEY=VALUE", in.Line, in.Cmd, w)
		}
		kv[k] = v
	}
	return kv
}

func execForm(t *testing.T, in instruction) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(in.Args), &argv); err != nil {
		t.Fatalf("Dockerfile line %d: %s is not in JSON (exec) form: %v", in.Line, in.Cmd, err)
	}
	return argv
}

// finalStage is what an image's stage in the Dockerfile makes.
type finalStage struct {
	Files      map[string]string // path in the image -> binary's name
	Runs       [][]string
	User       string
	Entrypoint []string
	Env        []string
	Labels     map[string]string
	Args       map[string]bool
}

func readFinalStage(t *testing.T, st stage) finalStage {
	t.Helper()
	fs := finalStage{Files: map[string]string{}, Labels: map[string]string{}, Args: map[string]bool{}}
	for _, in := range st.Body {
		switch in.Cmd {
		case "ARG":
			for k := range keyValues(t, in) {
				fs.Args[k] = true
			}
		case "COPY":
			var paths []string
			for _, w := range strings.Fields(in.Args) {
				if !strings.HasPrefix(w, "--") {
					paths = append(paths, w)
				}
			}
			if len(paths) != 2 {
				t.Fatalf("Dockerfile line %d: COPY one file to one path, have %q", in.Line, in.Args)
			}
			fs.Files[paths[1]] = path.Base(paths[0])
		case "RUN":
			fs.Runs = append(fs.Runs, execForm(t, in))
		case "USER":
			fs.User = in.Args
		case "ENTRYPOINT":
			fs.Entrypoint = execForm(t, in)
		case "ENV":
			for _, k := range sortedKeys(keyValues(t, in)) {
				fs.Env = append(fs.Env, k+"="+keyValues(t, in)[k])
			}
		case "LABEL":
			maps.Copy(fs.Labels, keyValues(t, in))
		default:
			// CMD, WORKDIR, EXPOSE, ...: the Go builder sets none of these.
			t.Errorf("Dockerfile line %d: stage %s has %s, which hack/release does not set", in.Line, st.Name, in.Cmd)
		}
	}
	return fs
}

var argRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

// TestDockerfileMatchesImages keeps the Dockerfile's final stages in step
// with Images: same files from the same binaries, user, entrypoint,
// environment and labels, the changing label values from build arguments of
// the names the Go builder's flags stand for.
func TestDockerfileMatchesImages(t *testing.T) {
	stages := parseDockerfile(t, "../../Dockerfile")
	if len(stages) == 0 {
		t.Fatal("Dockerfile has no stages")
	}
	if last := stages[len(stages)-1].Name; last != Images[0].Name {
		t.Errorf("the last stage (what a plain docker build builds) is %q, want %q", last, Images[0].Name)
	}
	var scratch []string
	for _, st := range stages {
		if st.Base == "scratch" {
			scratch = append(scratch, st.Name)
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(scratch)), slices.Sorted(slices.Values(imageNames()))) {
		t.Errorf("Dockerfile's FROM scratch stages are %v, want one per image: %v", scratch, imageNames())
	}
	// Labels as the Dockerfile must write them: the build-specific values
	// are its build arguments.
	meta := Meta{Version: "${" + argVersion + "}", Revision: "${" + argRevision + "}", Source: "${" + argSource + "}"}
	for _, img := range Images {
		t.Run(img.Name, func(t *testing.T) {
			i := slices.IndexFunc(stages, func(st stage) bool { return st.Name == img.Name })
			if i < 0 {
				t.Fatalf("Dockerfile has no stage %q", img.Name)
			}
			if stages[i].Base != "scratch" {
				t.Errorf("stage %s is FROM %s, want scratch (the Go builder's empty base)", img.Name, stages[i].Base)
			}
			got := readFinalStage(t, stages[i])

			want := map[string]string{}
			for _, f := range img.Files {
				want[f.Path] = f.Binary
			}
			if !maps.Equal(got.Files, want) {
				t.Errorf("files (path: binary) are %v, want %v", got.Files, want)
			}
			var wantRuns [][]string
			if img.AppletDir != "" {
				wantRuns = append(wantRuns, []string{"/bin/busybox", "--install", "-s", img.AppletDir})
			}
			if !slices.EqualFunc(got.Runs, wantRuns, slices.Equal) {
				t.Errorf("RUN %q, want %q", got.Runs, wantRuns)
			}
			if got.User != User {
				t.Errorf("USER %q, want %q", got.User, User)
			}
			if !slices.Equal(got.Entrypoint, img.Entrypoint) {
				t.Errorf("ENTRYPOINT %q, want %q", got.Entrypoint, img.Entrypoint)
			}
			if !slices.Equal(got.Env, img.Env) {
				t.Errorf("ENV %q, want %q", got.Env, img.Env)
			}
			wantLabels := img.Labels(meta)
			if !maps.Equal(got.Labels, wantLabels) {
				for _, k := range sortedKeys(wantLabels) {
					if got.Labels[k] != wantLabels[k] {
						t.Errorf("LABEL %s=%q, want %q", k, got.Labels[k], wantLabels[k])
					}
				}
				for _, k := range sortedKeys(got.Labels) {
					if _, ok := wantLabels[k]; !ok {
						t.Errorf("LABEL %s is not one hack/release sets", k)
					}
				}
			}
			for _, v := range got.Labels {
				for _, m := range argRef.FindAllStringSubmatch(v, -1) {
					if !got.Args[m[1]] {
						t.Errorf("a label uses ${%s}, which stage %s does not declare with ARG", m[1], img.Name)
					}
				}
			}
		})
	}
}

func TestWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`a=b c="d e" f="${G}"`, []string{"a=b", "c=d e", "f=${G}"}},
		{`  x   y `, []string{"x", "y"}},
		{`k=""`, []string{"k="}},
	} {
		if got := words(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("words(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
