package redirect

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
)

// The rules are tried in a network namespace the test makes with unshare:
// it has only loopback, carrying the service IP, so nothing can leave it.
// The test re-runs itself inside it.
const (
	inNetnsEnv = "APISNOOP_REDIRECT_IN_NETNS"
	dialEnv    = "APISNOOP_REDIRECT_DIAL"
	serviceIP  = "10.96.0.1"
	proxyUID   = 15337
)

func TestRedirectInOwnNetworkNamespace(t *testing.T) {
	if os.Getenv(inNetnsEnv) != "" {
		redirectInNetns(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("making a network namespace needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) is not installed")
	}
	// A copy of the test binary that the proxy's user may run too.
	dir, err := os.MkdirTemp("", "apisnoop-redirect-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "redirect.test")
	copyFile(t, os.Args[0], bin)
	cmd := exec.Command(unshare, "--net", "--", bin, "-test.run=^TestRedirectInOwnNetworkNamespace$", "-test.v")
	cmd.Env = append(os.Environ(), inNetnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in the network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("in the network namespace: %v", err)
	}
}

// TestDial is run by the test as another user: it dials $APISNOOP_REDIRECT_DIAL
// and prints who answered.
func TestDial(t *testing.T) {
	addr := os.Getenv(dialEnv)
	if addr == "" {
		t.Skip("helper of TestRedirectInOwnNetworkNamespace")
	}
	os.Stdout.WriteString("answered by " + whoAnswers(t, addr) + "\n")
}

func redirectInNetns(t *testing.T) {
	for _, args := range [][]string{{"link", "set", "lo", "up"}, {"addr", "add", serviceIP + "/32", "dev", "lo"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	// The real API server on the service address, the proxy on loopback.
	serve(t, serviceIP+":443", "api-server")
	serve(t, "127.0.0.1:15443", "proxy")
	service := serviceIP + ":443"
	rules := Rules{ServiceIP: net.ParseIP(serviceIP), ServicePort: 443, ProxyPort: 15443, ExcludeUID: proxyUID}

	if got := whoAnswers(t, service); got != "api-server" {
		t.Fatalf("before the rules, the service is answered by %s", got)
	}
	for range 2 { // a second install replaces the first
		if err := Install(rules); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := installedRules(); err != nil || n != 2 {
		t.Fatalf("installed twice: %d rules (%v), want 2", n, err)
	}
	if got := whoAnswers(t, service); got != "proxy" {
		t.Errorf("with the rules, the service is answered by %s, want the proxy", got)
	}
	if got := whoAnswers(t, "127.0.0.1:15443"); got != "proxy" {
		t.Errorf("the proxy's own port is answered by %s", got)
	}
	if got := dialAs(t, proxyUID, service); got != "api-server" {
		t.Errorf("the proxy's user reached %s, want the real API server", got)
	}
	if got := dialAs(t, 1000, service); got != "proxy" {
		t.Errorf("another user reached %s, want the proxy", got)
	}
	if err := Remove(); err != nil {
		t.Fatal(err)
	}
	if got := whoAnswers(t, service); got != "api-server" {
		t.Errorf("after removal, the service is answered by %s", got)
	}
	if err := Remove(); err != nil {
		t.Errorf("removing twice: %v", err)
	}
	if err := Install(Rules{ServicePort: 443, ProxyPort: 15443}); err == nil {
		t.Error("rules without a service IP were installed")
	}
}

// serve answers every connection with its name.
func serve(t *testing.T, addr, name string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(conn, name+"\n")
			conn.Close()
		}
	}()
}

func whoAnswers(t *testing.T, addr string) string {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return strings.TrimSpace(line)
}

// dialAs runs TestDial as uid and returns who answered it.
func dialAs(t *testing.T, uid uint32, addr string) string {
	cmd := exec.Command(os.Args[0], "-test.run=^TestDial$", "-test.v")
	cmd.Env = append(os.Environ(), dialEnv+"="+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dial as %d: %v\n%s", uid, err, out)
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if who, ok := strings.CutPrefix(line, "answered by "); ok {
			return who
		}
	}
	t.Fatalf("dial as %d: no answer in\n%s", uid, out)
	return ""
}

func copyFile(t *testing.T, from, to string) {
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// installedRules counts the rules in the table.
func installedRules() (int, error) {
	conn, err := nftables.New()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, family := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		table, err := conn.ListTableOfFamily(TableName, family)
		if err != nil {
			continue // no such table
		}
		rules, err := conn.GetRules(table, &nftables.Chain{Name: "output", Table: table})
		if err != nil {
			return 0, err
		}
		n += len(rules)
	}
	return n, nil
}
