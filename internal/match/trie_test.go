package match

import (
	"strings"
	"testing"
)

// TestLookupSegmentsAgreesWithLookup walks the trie both ways, over the
// path split once (as Match does) and over the path string, for every
// operation's path with its parameters filled, cut short, made longer
// (past the segments splitSegments keeps), with empty segments and with
// segments that are literal elsewhere, for every method.
func TestLookupSegmentsAgreesWithLookup(t *testing.T) {
	m := loadMatcher(t, "1.37")
	var paths []string
	for _, op := range m.Catalog().Operations {
		path := strings.NewReplacer("{", "", "}", "").Replace(op.Path)
		segs := strings.Split(strings.Trim(path, "/"), "/")
		paths = append(paths, path, op.Path, path+"/a/b/c/d/e/f/g/h/i/j", "//"+path+"//", strings.ReplaceAll(path, "/", "//"))
		for i := range segs {
			paths = append(paths, "/"+strings.Join(segs[:i], "/"))
			swapped := append([]string(nil), segs...)
			swapped[i] = "status"
			paths = append(paths, "/"+strings.Join(swapped, "/"))
		}
	}
	methods := []method{methodGet, methodPut, methodPost, methodPatch, methodDelete, methodHead, methodOptions, methodNone}
	for _, path := range paths {
		var parts pathSegments
		splitSegments(path, &parts)
		for _, want := range methods {
			fallback := methodNone
			if want == methodHead {
				fallback = methodGet
			}
			bySegments := m.root.lookupSegments(&parts, 0, want, fallback)
			byString := m.root.lookup(strings.Trim(path, "/"), want, fallback)
			if bySegments != byString {
				t.Fatalf("%s (method %d): lookupSegments and lookup disagree", path, want)
			}
		}
	}
	t.Logf("%d paths", len(paths))
}
