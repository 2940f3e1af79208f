package proxytest

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

// ChunkedStream writes chunks JSON lines, flushing each, and writes the next
// one only once next receives: the client must have read the previous one,
// so a buffering proxy deadlocks here.
func ChunkedStream(chunks int, next <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for i := range chunks {
			fmt.Fprintf(w, "{\"chunk\":%d}\n", i)
			_ = http.NewResponseController(w).Flush()
			if i == chunks-1 {
				return
			}
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
}

// ReadChunks reads what ChunkedStream writes, line by line, and lets it write
// the next line only after reading the previous one.
func ReadChunks(t testing.TB, body io.Reader, chunks int, next chan<- struct{}) {
	t.Helper()
	lines := bufio.NewReader(body) // body itself if it is a large enough *bufio.Reader
	for i := range chunks {
		line, err := ReadLineGuarded(lines)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if want := fmt.Sprintf("{\"chunk\":%d}\n", i); line != want {
			t.Fatalf("chunk %d = %q, want %q", i, line, want)
		}
		if i < chunks-1 {
			next <- struct{}{}
		}
	}
}

// ReadLineGuarded reads a line, failing after WaitLimit instead of hanging
// forever when the proxy holds the data back.
func ReadLineGuarded(r *bufio.Reader) (string, error) {
	type result struct {
		line string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		line, err := r.ReadString('\n')
		got <- result{line, err}
	}()
	select {
	case res := <-got:
		return res.line, res.err
	case <-time.After(WaitLimit):
		return "", fmt.Errorf("nothing arrived: the proxy buffers the stream")
	}
}

// SPDYUpstream answers an SPDY/3.1 upgrade over HTTP/1.1 like the API
// server's exec and attach, then greets and echoes raw bytes line by line.
func SPDYUpstream(t testing.TB) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "SPDY/3.1" || !httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") || r.ProtoMajor != 1 {
			http.Error(w, "want an SPDY/3.1 upgrade over HTTP/1.1, got "+r.Proto, http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\ngreeting\n")
		_ = brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = brw.WriteString("echo:" + line)
			_ = brw.Flush()
		}
	})
}

// SPDYEcho is the client's side of SPDYUpstream after the 101: it reads the
// greeting from r, writes line (ending in a newline) to w and reads the
// echo.
func SPDYEcho(t testing.TB, w io.Writer, r *bufio.Reader, line string) {
	t.Helper()
	if got, err := ReadLineGuarded(r); err != nil || got != "greeting\n" {
		t.Fatalf("greeting %q, %v", got, err)
	}
	_, _ = io.WriteString(w, line)
	if got, err := ReadLineGuarded(r); err != nil || got != "echo:"+line {
		t.Fatalf("echo %q, %v", got, err)
	}
}
