package match

import (
	"math/bits"
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
	// static children by literal segment, while the trie is built; freeze
	// then moves them to children, which lookups use.
	static map[string]*node
	// children are the static children in an open-addressing table keyed
	// by segment (see childSlot); nil nodes are free slots. Every request
	// looks up a few segments: a map hashes each whole segment, this table
	// a few of its bytes, the compare settling the rest.
	children []child
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

// child is one slot of node.children.
type child struct {
	seg  string
	node *node
}

// childSlot is where the probe for seg starts in a table of 1<<shift
// slots: a multiplicative hash of its length and first, middle and last
// bytes, which tell the segments of one node apart well enough.
func childSlot(seg string, shift uint) int {
	h := uint64(len(seg))
	if len(seg) > 0 {
		h |= uint64(seg[0])<<8 | uint64(seg[len(seg)/2])<<16 | uint64(seg[len(seg)-1])<<24
	}
	return int((h * 0x9e3779b97f4a7c15) >> (64 - shift))
}

// freeze moves the static children of n and its descendants to their
// lookup tables, at most a quarter full.
func (n *node) freeze() {
	if len(n.static) > 0 {
		shift := uint(2)
		for 1<<shift < 4*len(n.static) {
			shift++
		}
		n.children = make([]child, 1<<shift)
		mask := len(n.children) - 1
		for seg, c := range n.static {
			i := childSlot(seg, shift)
			for n.children[i].node != nil {
				i = (i + 1) & mask
			}
			n.children[i] = child{seg, c}
			c.freeze()
		}
	}
	n.static = nil
	if n.param != nil {
		n.param.freeze()
	}
	if n.tail != nil {
		n.tail.freeze()
	}
}

// staticChild returns the static child for seg, nil when there is none.
func (n *node) staticChild(seg string) *node {
	if len(n.children) == 0 {
		return nil
	}
	mask := len(n.children) - 1
	shift := uint(bits.TrailingZeros(uint(len(n.children))))
	for i := childSlot(seg, shift); ; i = (i + 1) & mask {
		c := &n.children[i]
		if c.node == nil {
			return nil
		}
		if c.seg == seg {
			return c.node
		}
	}
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
	// strings.Cut(path, "/"), by hand: segments are short, a loop beats
	// the call to IndexByte.
	seg, rest := path, ""
	for i := 0; i < len(path); i++ {
		if path[i] == '/' {
			seg, rest = path[:i], path[i+1:]
			break
		}
	}
	if child := n.staticChild(seg); child != nil {
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

// lookupSegments is lookup for the path parts split, from its segment i
// on, so that a request's path is cut into segments once.
func (n *node) lookupSegments(parts *pathSegments, i int, m, fallback method) *node {
	if i >= maxLeadingSegments {
		return n.lookup(parts.rest, m, fallback)
	}
	if i >= parts.count {
		if n.has(m) || n.has(fallback) {
			return n
		}
		return nil
	}
	seg := parts.first[i]
	if child := n.staticChild(seg); child != nil {
		if found := child.lookupSegments(parts, i+1, m, fallback); found != nil {
			return found
		}
	}
	if n.param != nil && seg != "" {
		if found := n.param.lookupSegments(parts, i+1, m, fallback); found != nil {
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
