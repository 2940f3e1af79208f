// Package kubesource builds the body schemas of a release from a
// kubernetes/kubernetes source tree (the k8s.io/kubernetes module), for
// hack/gen-catalog. The published swagger.json carries no enum values, so
// they are read from the OpenAPI definitions openapi-gen writes as Go
// (pkg/generated/openapi/zz_generated.openapi.go), whose +enum types list
// them. It is apart from package catalog so that only the generator links
// go/parser.
package kubesource

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// GeneratedOpenAPIFile holds the Go OpenAPI definitions of every built-in
// type of a kubernetes/kubernetes tree.
const GeneratedOpenAPIFile = "pkg/generated/openapi/zz_generated.openapi.go"

// ModuleDir is the module cache directory of source, a catalog's
// k8s.io/kubernetes@VERSION. go generate ./internal/catalog downloads it;
// a test cannot (it has no network), so it is an error when missing.
func ModuleDir(source string) (string, error) {
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	// k8s.io/kubernetes needs no case-escaping in module cache paths.
	dir := filepath.Join(strings.TrimSpace(string(modcache)), source)
	if _, err := os.Stat(filepath.Join(dir, catalog.SwaggerFile)); err != nil {
		return "", fmt.Errorf("%s is not in the module cache; run go generate ./internal/catalog to download it: %w", source, err)
	}
	return dir, nil
}

// Schemas builds the body schemas of a release from a kubernetes/kubernetes
// source tree: swagger.json, with the enums of GeneratedOpenAPIFile, and
// the protobuf field numbers of the generated.proto files of protos, the
// trees of the ProtoModules (ProtoModuleDirs).
func Schemas(tree fs.FS, protos []fs.FS, release, source string) (*catalog.Schemas, error) {
	swagger, err := fs.ReadFile(tree, catalog.SwaggerFile)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", catalog.SwaggerFile, err)
	}
	generated, err := fs.ReadFile(tree, GeneratedOpenAPIFile)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", GeneratedOpenAPIFile, err)
	}
	enums, err := Enums(generated)
	if err != nil {
		return nil, err
	}
	schemas, err := catalog.SchemasFromOpenAPIV2(swagger, release, source, enums)
	if err != nil {
		return nil, err
	}
	messages, err := readProtoMessages(protos)
	if err != nil {
		return nil, err
	}
	if unplaced := annotateProto(schemas, messages); len(unplaced) > 0 {
		return nil, fmt.Errorf("protobuf fields without a property: %s", strings.Join(unplaced, ", "))
	}
	// Check the numbers (no two properties at one field) and index them.
	encoded, err := catalog.EncodeSchemas(schemas)
	if err != nil {
		return nil, err
	}
	return catalog.DecodeSchemas(encoded)
}

// Enums reads the enum values of the properties of every definition in an
// openapi-gen output file, keyed by the definitions' OpenAPI names
// (io.k8s.api.core.v1.Container).
func Enums(src []byte) (catalog.Enums, error) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, GeneratedOpenAPIFile, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", GeneratedOpenAPIFile, err)
	}
	imports := map[string]string{} // alias -> import path
	for _, spec := range file.Imports {
		importPath, _ := strconv.Unquote(spec.Path.Value)
		alias := path.Base(importPath)
		if spec.Name != nil {
			alias = spec.Name.Name
		}
		imports[alias] = importPath
	}
	funcs := map[string]*ast.FuncDecl{}
	var definitions *ast.CompositeLit
	for _, decl := range file.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok {
			continue
		}
		funcs[fn.Name.Name] = fn
		if fn.Name.Name == "GetOpenAPIDefinitions" {
			definitions = returnedLiteral(fn)
		}
	}
	if definitions == nil {
		return nil, fmt.Errorf("parse %s: no GetOpenAPIDefinitions map", GeneratedOpenAPIFile)
	}
	enums := catalog.Enums{}
	for _, elt := range definitions.Elts {
		kv, ok := elt.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		name, ok := definitionName(kv.Key, imports)
		if !ok {
			return nil, fmt.Errorf("parse %s: definition key at %s", GeneratedOpenAPIFile, fset.Position(kv.Key.Pos()))
		}
		call, ok := kv.Value.(*ast.CallExpr)
		if !ok {
			continue
		}
		ident, ok := call.Fun.(*ast.Ident)
		if !ok || funcs[ident.Name] == nil {
			continue
		}
		definition := returnedLiteral(funcs[ident.Name])
		if definition == nil {
			continue
		}
		fields := map[string][]string{}
		if schema := field(definition, "Schema"); schema != nil {
			collectEnums(schema, "", fields)
		}
		if len(fields) > 0 {
			enums[name] = fields
		}
	}
	return enums, nil
}

// definitionName reads a key of the GetOpenAPIDefinitions map: a Go name
// "k8s.io/api/core/v1.Container" (up to 1.34) or
// v1.Container{}.OpenAPIModelName() (1.35 on), and returns its OpenAPI
// name.
func definitionName(key ast.Expr, imports map[string]string) (string, bool) {
	switch key := key.(type) {
	case *ast.BasicLit:
		goName, err := strconv.Unquote(key.Value)
		return restFriendlyName(goName), err == nil
	case *ast.CallExpr:
		method, ok := key.Fun.(*ast.SelectorExpr)
		if !ok || method.Sel.Name != "OpenAPIModelName" {
			return "", false
		}
		lit, ok := method.X.(*ast.CompositeLit)
		if !ok {
			return "", false
		}
		typ, ok := lit.Type.(*ast.SelectorExpr)
		if !ok {
			return "", false
		}
		pkg, ok := typ.X.(*ast.Ident)
		if !ok || imports[pkg.Name] == "" {
			return "", false
		}
		return restFriendlyName(imports[pkg.Name] + "." + typ.Sel.Name), true
	}
	return "", false
}

// restFriendlyName is kube-openapi's util.ToRESTFriendlyName, which the API
// server names definitions by: the first path element's domain reversed,
// then '/' as '.' ("k8s.io/api/core/v1.Pod" -> "io.k8s.api.core.v1.Pod").
func restFriendlyName(goName string) string {
	parts := strings.Split(goName, "/")
	if strings.Contains(parts[0], ".") {
		domain := strings.Split(parts[0], ".")
		for i, j := 0, len(domain)-1; i < j; i, j = i+1, j-1 {
			domain[i], domain[j] = domain[j], domain[i]
		}
		parts[0] = strings.Join(domain, ".")
	}
	return strings.Join(parts, ".")
}

// returnedLiteral returns the composite literal a function returns.
func returnedLiteral(fn *ast.FuncDecl) *ast.CompositeLit {
	if fn.Body == nil {
		return nil
	}
	for _, stmt := range fn.Body.List {
		if ret, ok := stmt.(*ast.ReturnStmt); ok && len(ret.Results) == 1 {
			lit, _ := ret.Results[0].(*ast.CompositeLit)
			return lit
		}
	}
	return nil
}

// field returns the composite literal value of a keyed field, looking
// through &.
func field(lit *ast.CompositeLit, name string) *ast.CompositeLit {
	for _, elt := range lit.Elts {
		kv, ok := elt.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		if key, ok := kv.Key.(*ast.Ident); ok && key.Name == name {
			value := kv.Value
			if unary, ok := value.(*ast.UnaryExpr); ok && unary.Op == token.AND {
				value = unary.X
			}
			result, _ := value.(*ast.CompositeLit)
			return result
		}
	}
	return nil
}

// collectEnums walks a spec.Schema literal: its properties, items and
// additional properties, one property deep (nested structs are references
// to their own definitions), recording Enum values under their field
// (catalog.Enums).
func collectEnums(schema *ast.CompositeLit, prefix string, out map[string][]string) {
	props := field(schema, "SchemaProps")
	if props == nil {
		return
	}
	if prefix != "" {
		if enum := field(props, "Enum"); enum != nil {
			var values []string
			for _, elt := range enum.Elts {
				lit, ok := elt.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					values = nil
					break
				}
				value, err := strconv.Unquote(lit.Value)
				if err != nil {
					values = nil
					break
				}
				values = append(values, value)
			}
			if len(values) > 0 {
				out[prefix] = values
			}
		}
	}
	if prefix == "" {
		if properties := field(props, "Properties"); properties != nil {
			for _, elt := range properties.Elts {
				kv, ok := elt.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				key, ok := kv.Key.(*ast.BasicLit)
				value, isLit := kv.Value.(*ast.CompositeLit)
				if !ok || !isLit {
					continue
				}
				name, err := strconv.Unquote(key.Value)
				if err != nil {
					continue
				}
				collectEnums(value, name, out)
			}
		}
		return
	}
	if items := field(props, "Items"); items != nil {
		if schema := field(items, "Schema"); schema != nil {
			collectEnums(schema, prefix+"[]", out)
		}
	}
	if additional := field(props, "AdditionalProperties"); additional != nil {
		if schema := field(additional, "Schema"); schema != nil {
			collectEnums(schema, prefix+"{}", out)
		}
	}
}
