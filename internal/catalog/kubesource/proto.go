package kubesource

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// ProtoModules are the modules whose generated.proto files describe the
// protobuf encoding of built-in types; each is tagged v0.N.P for
// k8s.io/kubernetes v1.N.P.
var ProtoModules = []string{"k8s.io/api", "k8s.io/apimachinery", "k8s.io/apiextensions-apiserver", "k8s.io/kube-aggregator"}

// ProtoVersion is the version of the ProtoModules that goes with a
// k8s.io/kubernetes version (v1.37.2 -> v0.37.2).
func ProtoVersion(kubernetesVersion string) (string, error) {
	rest, ok := strings.CutPrefix(kubernetesVersion, "v1.")
	if !ok {
		return "", fmt.Errorf("k8s.io/kubernetes version %q is not v1.N.P", kubernetesVersion)
	}
	return "v0." + rest, nil
}

// ProtoModuleDirs returns the module cache directories of the ProtoModules
// that go with source (k8s.io/kubernetes@VERSION). Like ModuleDir, it
// fails when one is missing: go generate ./internal/catalog downloads
// them.
func ProtoModuleDirs(source string) ([]string, error) {
	_, version, ok := strings.Cut(source, "@")
	if !ok {
		return nil, fmt.Errorf("source %q has no version", source)
	}
	protoVersion, err := ProtoVersion(version)
	if err != nil {
		return nil, err
	}
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	dirs := make([]string, 0, len(ProtoModules))
	for _, module := range ProtoModules {
		// These module paths need no case-escaping in the module cache.
		dir := filepath.Join(strings.TrimSpace(string(modcache)), module+"@"+protoVersion)
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
			return nil, fmt.Errorf("%s@%s is not in the module cache; run go generate ./internal/catalog to download it: %w", module, protoVersion, err)
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}

// protoField is one field of a message in a generated.proto file.
type protoField struct {
	name   string
	number int32
	// typ is the field's type (a map's value type) resolved to a
	// definition name when it is a message, else the proto scalar type.
	typ string
}

// protoMessages are the messages of every generated.proto file, keyed by
// the OpenAPI definition name of the Go type each stands for.
type protoMessages map[string][]protoField

var (
	protoPackageLine   = regexp.MustCompile(`^package ([A-Za-z0-9_.]+);`)
	protoGoPackageLine = regexp.MustCompile(`^option go_package = "([^"]+)";`)
	protoMessageLine   = regexp.MustCompile(`^message ([A-Za-z0-9_]+) \{`)
	protoFieldLine     = regexp.MustCompile(`^\s+(?:(?:optional|repeated) ([A-Za-z0-9_.]+)|map<[a-z0-9]+, ?([A-Za-z0-9_.]+)>) ([A-Za-z0-9_]+) = ([0-9]+);`)
)

type protoFile struct {
	pkg, goPackage string
	messages       map[string][]protoField // field types unresolved
}

// parseProto reads a generated.proto file as go-to-protobuf writes it: one
// top-level message per type, one field a line.
func parseProto(name string, src []byte) (*protoFile, error) {
	f := &protoFile{messages: map[string][]protoField{}}
	var current string
	for i, line := range strings.Split(string(src), "\n") {
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "//"):
		case protoPackageLine.MatchString(line):
			f.pkg = protoPackageLine.FindStringSubmatch(line)[1]
		case protoGoPackageLine.MatchString(line):
			f.goPackage = protoGoPackageLine.FindStringSubmatch(line)[1]
		case protoMessageLine.MatchString(line):
			current = protoMessageLine.FindStringSubmatch(line)[1]
			f.messages[current] = nil
		case line == "}":
			current = ""
		case protoFieldLine.MatchString(line):
			if current == "" {
				return nil, fmt.Errorf("%s:%d: field outside a message", name, i+1)
			}
			m := protoFieldLine.FindStringSubmatch(line)
			number, err := strconv.ParseInt(m[4], 10, 32)
			if err != nil || number <= 0 {
				return nil, fmt.Errorf("%s:%d: field number %s", name, i+1, m[4])
			}
			f.messages[current] = append(f.messages[current], protoField{name: m[3], number: int32(number), typ: m[1] + m[2]})
		case strings.Contains(line, " = ") && current != "":
			return nil, fmt.Errorf("%s:%d: unread field %q", name, i+1, strings.TrimSpace(line))
		}
	}
	if f.pkg == "" {
		return nil, fmt.Errorf("%s: no package", name)
	}
	if f.goPackage == "" {
		// Older files lack go_package; the proto package names the Go
		// package with '/' as '.' and '-' as '_'.
		f.goPackage = strings.ReplaceAll(strings.Replace(f.pkg, "k8s.io.", "k8s.io/", 1), ".", "/")
		f.goPackage = strings.ReplaceAll(f.goPackage, "_", "-")
	}
	return f, nil
}

var protoScalars = map[string]bool{
	"string": true, "bytes": true, "bool": true, "int32": true, "int64": true, "uint32": true, "uint64": true,
	"sint32": true, "sint64": true, "double": true, "float": true, "fixed32": true, "fixed64": true,
}

// readProtoMessages reads every generated.proto file of the module trees.
func readProtoMessages(trees []fs.FS) (protoMessages, error) {
	var files []*protoFile
	byPackage := map[string]*protoFile{}
	for _, tree := range trees {
		err := fs.WalkDir(tree, ".", func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || d.Name() == "vendor") {
				return fs.SkipDir
			}
			if d.IsDir() || d.Name() != "generated.proto" {
				return nil
			}
			src, err := fs.ReadFile(tree, name)
			if err != nil {
				return err
			}
			f, err := parseProto(name, src)
			if err != nil {
				return err
			}
			if byPackage[f.pkg] != nil {
				return fmt.Errorf("%s: package %s defined twice", name, f.pkg)
			}
			byPackage[f.pkg] = f
			files = append(files, f)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read generated.proto files: %w", err)
		}
	}
	out := protoMessages{}
	for _, f := range files {
		for message, fields := range f.messages {
			resolved := make([]protoField, len(fields))
			for i, field := range fields {
				resolved[i] = field
				if protoScalars[field.typ] {
					continue
				}
				pkg, name := f, strings.TrimPrefix(field.typ, ".")
				if dot := strings.LastIndexByte(name, '.'); dot >= 0 {
					if pkg = byPackage[name[:dot]]; pkg == nil {
						// A package outside the trees (none in
						// Kubernetes' files): an opaque message.
						resolved[i].typ = name
						continue
					}
					name = name[dot+1:]
				}
				resolved[i].typ = restFriendlyName(pkg.goPackage + "." + name)
			}
			out[restFriendlyName(f.goPackage+"."+message)] = resolved
		}
	}
	return out, nil
}

// annotateProto sets the protobuf field numbers of the properties of every
// named object type that has a message. A message field that is no
// property but a message whose fields all are (at any depth) is an inline
// struct (Volume's volumeSource; NamedRuleWithOperations'
// ruleWithOperations, which holds rule). It returns the fields it could
// not place, as "definition.field", which a caller can report.
func annotateProto(s *catalog.Schemas, messages protoMessages) (unplaced []string) {
	for i := range s.Types {
		t := &s.Types[i]
		fields, ok := messages[t.Name]
		if !ok || t.Kind != catalog.KindObject || len(t.Properties) == 0 {
			continue
		}
		// Proto names are Go's protobuf tag names, which mostly equal
		// the JSON names but not always (Webhooks, uID, aPIGroup, ref for
		// $ref, xKubernetesListType for x-kubernetes-list-type): they are
		// matched exactly, else on letters and digits alone regardless of
		// case, unless two properties would match.
		index := map[string]int{}
		loose := map[string]int{}
		for j, p := range t.Properties {
			index[p.Name] = j
			key := looseName(p.Name)
			if _, dup := loose[key]; dup {
				loose[key] = -1
				continue
			}
			loose[key] = j
		}
		property := func(name string) (int, bool) {
			if j, ok := index[name]; ok {
				return j, true
			}
			j, ok := loose[looseName(name)]
			return j, ok && j >= 0
		}
		// Types copied for field-level extensions share Properties with
		// their definition; assigning the same numbers again is harmless.
		var place func(fields []protoField, in []int32, depth int) bool
		place = func(fields []protoField, in []int32, depth int) bool {
			for _, field := range fields {
				if j, ok := property(field.name); ok {
					t.Properties[j].Proto, t.Properties[j].ProtoIn = field.number, in
					continue
				}
				inner, isMessage := messages[field.typ]
				if !isMessage || len(inner) == 0 || depth > 4 ||
					!place(inner, append(append([]int32(nil), in...), field.number), depth+1) {
					if depth > 0 {
						return false
					}
					unplaced = append(unplaced, t.Name+"."+field.name)
				}
			}
			return true
		}
		place(fields, nil, 0)
	}
	sort.Strings(unplaced)
	return compact(unplaced)
}

func compact(sorted []string) []string {
	out := sorted[:0]
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// looseName keeps the letters and digits of a name, lower-cased.
func looseName(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}
