package report

import (
	"bufio"
	"encoding/json"
	"io"
)

// writeJSON writes v as json.Encoder does with SetIndent("", "  "), byte
// for byte, but indents json.Marshal's compact text on its way out
// through a small buffer: the Encoder builds the indented copy in memory
// first, one scanner step per byte, and a coverage report is hundreds of
// kilobytes.
func writeJSON(w io.Writer, v any) error {
	src, err := json.Marshal(v)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	writeIndented(bw, src)
	bw.WriteByte('\n')
	return bw.Flush()
}

// writeIndented writes src, compact JSON as json.Marshal writes it (no
// space outside strings), indented as json.Indent(dst, src, "", "  ")
// does: a member or element per line, ": " after names, and empty objects
// and arrays left as {} and [].
func writeIndented(bw *bufio.Writer, src []byte) {
	depth := 0
	// open is set after '{' or '[': the newline waits, since the object or
	// array may be empty.
	open := false
	newline := func() {
		bw.WriteByte('\n')
		for range depth {
			bw.WriteString("  ")
		}
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		if open && c != '}' && c != ']' {
			open = false
			depth++
			newline()
		}
		switch c {
		case '"':
			// The string as it is, up to its closing quote.
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++ // the escaped byte is not the end
				}
				j++
			}
			bw.Write(src[i:min(j+1, len(src))])
			i = j
		case '{', '[':
			open = true
			bw.WriteByte(c)
		case ',':
			bw.WriteByte(c)
			newline()
		case ':':
			bw.WriteString(": ")
		case '}', ']':
			if open {
				open = false
			} else {
				depth--
				newline()
			}
			bw.WriteByte(c)
		default:
			// A number or a literal: the bytes up to the next punctuation.
			j := i + 1
			for j < len(src) && !isPunct(src[j]) {
				j++
			}
			bw.Write(src[i:j])
			i = j - 1
		}
	}
}

func isPunct(c byte) bool {
	return c == ',' || c == ':' || c == '}' || c == ']' || c == '{' || c == '[' || c == '"'
}
