package catalog

import (
	"fmt"
	"io/fs"
	"sort"

	"sigs.k8s.io/yaml"
)

// Files of a kubernetes/kubernetes source tree the catalog is built from.
const (
	SwaggerFile     = "api/openapi-spec/swagger.json"
	IneligibleFile  = "test/conformance/testdata/ineligible_endpoints.yaml"
	PendingFile     = "test/conformance/testdata/pending_eligible_endpoints.yaml"
	ConformanceFile = "test/conformance/testdata/conformance.yaml"
)

// FromKubernetesSource builds the catalog of a release from a
// kubernetes/kubernetes source tree (the k8s.io/kubernetes module in the
// module cache): its swagger.json, the ineligible and pending lists, and
// conformance.yaml. source is recorded in Catalog.Source.
func FromKubernetesSource(tree fs.FS, release, source string) (*Catalog, error) {
	var files [4][]byte
	for i, name := range []string{SwaggerFile, IneligibleFile, PendingFile, ConformanceFile} {
		content, err := fs.ReadFile(tree, name)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		files[i] = content
	}
	swagger, ineligibleYAML, pendingYAML, conformanceYAML := files[0], files[1], files[2], files[3]

	var lists ConformanceLists
	var ineligible []struct {
		Endpoint string `json:"endpoint"`
		Reason   string `json:"reason"`
	}
	if err := yaml.Unmarshal(ineligibleYAML, &ineligible); err != nil {
		return nil, fmt.Errorf("parse %s: %w", IneligibleFile, err)
	}
	lists.Ineligible = make(map[string]string, len(ineligible))
	for _, entry := range ineligible {
		lists.Ineligible[entry.Endpoint] = entry.Reason
	}
	if err := yaml.Unmarshal(pendingYAML, &lists.Pending); err != nil {
		return nil, fmt.Errorf("parse %s: %w", PendingFile, err)
	}
	sort.Strings(lists.Pending)

	var tests []ConformanceTest
	if err := yaml.Unmarshal(conformanceYAML, &tests); err != nil {
		return nil, fmt.Errorf("parse %s: %w", ConformanceFile, err)
	}
	sort.SliceStable(tests, func(i, j int) bool { return tests[i].Codename < tests[j].Codename })

	c, err := fromOpenAPIV2(swagger, NormalizeRelease(release), lists)
	if err != nil {
		return nil, err
	}
	c.Source = source
	c.ConformanceTests = tests
	c.index()
	return c, nil
}
