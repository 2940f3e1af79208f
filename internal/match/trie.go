package match

import (
	"strings"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
)

// method indexes the per-node operation table. The catalog only has these
// seven methods; any other request method matches no operation.
type method int

const (
	methodGet method = iota
	methodPut
	methodPost
	methodPatch
	methodDelete
	methodHead
	methodOptions
	numMethods
	methodNone method = -1
)

func methodOf(m string) method {
	switch m {
	case "GET":
		return methodGet
	case "PUT":
		return methodPut
	case "POST":
		return methodPost
	case "PATCH":
		return methodPatch
	case "DELETE":
		return methodDelete
	case "HEAD":
		return methodHead
	case "OPTIONS":
		return methodOptions
	}
	return methodNone
}

// node is one path segment of the operation templates. Templates are
// split like request paths: leading and trailing slashes dropped, so the
// discovery template /apis/apps/ is the node sequence apis, apps and
// matches both /apis/apps and /apis/apps/.
type node struct {
	// static children by literal segment; looking a substring up in a map
	// does not allocate.
	static map[string]*node
	// param is the child for a {parameter} segment (any non-empty segment).
	// Templates name parameters differently at the same position
	// (namespaces/{name} and namespaces/{namespace}/pods), so there is one
	// param child whatever the name.
	param *node
	// tail is the child for a trailing {path} or {logpath}, which matches
	// all the rest of the path (proxy/{path}, logs/{logpath}): one segment
	// or many, never nothing, since .../proxy and /logs/ have their own
	// operations.
	tail *node
	// ops are the operations ending here, by method.
	ops [numMethods]*catalog.Operation
}

// tailParams are the parameters that take the rest of the path.
var tailParams = map[string]bool{"{path}": true, "{logpath}": true}

func (n *node) insert(op *catalog.Operation) {
	m := methodOf(op.Method)
	if m == methodNone {
		return
	}
	template := strings.Trim(op.Path, "/")
	cur := n
	for template != "" {
		seg, rest, _ := strings.Cut(template, "/")
		template = rest
		switch {
		case rest == "" && tailParams[seg]:
			if cur.tail == nil {
				cur.tail = &node{}
			}
			cur = cur.tail
		case strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}"):
			if cur.param == nil {
				cur.param = &node{}
			}
			cur = cur.param
		default:
			child := cur.static[seg]
			if child == nil {
				if cur.static == nil {
					cur.static = map[string]*node{}
				}
				child = &node{}
				cur.static[seg] = child
			}
			cur = child
		}
	}
	if prev := cur.ops[m]; prev == nil || preferred(op, prev) {
		cur.ops[m] = op
	}
}

// preferred decides between two operations with the same method and path
// template, which no embedded catalog has: the non-deprecated one, else the
// smaller operationId, so that the choice does not depend on input order.
func preferred(a, b *catalog.Operation) bool {
	if a.Deprecated != b.Deprecated {
		return !a.Deprecated
	}
	return a.ID < b.ID
}

// lookup finds the node for path (already trimmed of leading and trailing
// slashes) that has an operation for m, or failing that for fallback (GET
// for HEAD). Literal segments win over parameters, parameters over tails;
// it backtracks when the more specific branch has no such operation.
func (n *node) lookup(path string, m, fallback method) *node {
	if path == "" {
		if n.has(m) || n.has(fallback) {
			return n
		}
		return nil
	}
	seg, rest, _ := strings.Cut(path, "/")
	if child := n.static[seg]; child != nil {
		if found := child.lookup(rest, m, fallback); found != nil {
			return found
		}
	}
	if n.param != nil && seg != "" {
		if found := n.param.lookup(rest, m, fallback); found != nil {
			return found
		}
	}
	if n.tail != nil && (n.tail.has(m) || n.tail.has(fallback)) {
		return n.tail
	}
	return nil
}

func (n *node) has(m method) bool {
	return m != methodNone && n.ops[m] != nil
}
