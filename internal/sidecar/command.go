// Package sidecar is the recording proxy's command line: its flags, the wiring
// of proxy, recorder and shipper, and serving until the pod stops. The
// injected sidecar runs it as the small snoop-proxy binary; `apisnoop proxy`
// is the same command for local use.
package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"apisnoop.dev/kube-apisnoop/internal/certs"
	"apisnoop.dev/kube-apisnoop/internal/match"
	"apisnoop.dev/kube-apisnoop/internal/proxy"
	"apisnoop.dev/kube-apisnoop/internal/record"
)

// serviceAccountDir is where pods find the cluster CA and their token.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// resultsPort is the default loopback port of /results, reached with
// kubectl port-forward. The webhook's flags for the sidecar say the same.
const resultsPort = 15021

type proxyOptions struct {
	listen, adminListen      string
	resultsListen            string
	connectListen            string
	certFile, keyFile        string
	upstream, upstreamCAFile string
	release, catalogFile     string
	schemasFile              string
	catalogCheck             time.Duration
	collectorURL             string
	collectorCAFile          string
	collectorTokenFile       string
	shipInterval             time.Duration
	identity                 record.Identity
	source                   string
	keepBodies               bool
	relay                    bool
	profiling                bool
	maxBodyBytes             int
	connect                  ConnectMode
}

// ConnectMode serves the CONNECT mode on ln until ctx ends: a plain-HTTP
// proxy for clients that honour HTTPS_PROXY, whose tunnels to the intercept
// hosts (host:port) are served by handler, presenting the certificate
// getCertificate gives; other tunnels pass untouched. It is package
// connect's Run. The sidecar binary has none, because it would link goproxy
// into every recorded pod; `apisnoop proxy` has it.
type ConnectMode func(ctx context.Context, ln net.Listener, intercept []string, handler http.Handler,
	getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) error

// NewCommand is the proxy command; use names it ("proxy" under apisnoop,
// "snoop-proxy" as the sidecar binary's root). With connect, it also has
// --connect-listen.
func NewCommand(use string, connect ConnectMode) *cobra.Command {
	o := proxyOptions{connect: connect}
	cmd := &cobra.Command{
		Use:   use,
		Short: "Run the recording proxy: the sidecar of injected pods",
		Long: `Serves TLS on --listen, forwards every request unchanged to the real API
server with the client's own credentials (relaying each connection's bytes
over a TLS connection of its own, reading HTTP/2 and HTTP/1.1 on the way;
--relay=false forwards through a reverse proxy), matches it against --catalog-file
or --release and ships aggregated deltas to --collector. /healthz, /readyz
and /metrics are served on --admin-listen; /results, which names the
clients, only on the loopback --results-listen. When matching, recording or
shipping fails, proxying goes on: a catalog it cannot load leaves every
request unknown.`,
		RunE: func(cmd *cobra.Command, _ []string) error { return runProxy(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", ":15443", "address the TLS proxy listens on")
	if connect != nil {
		f.StringVar(&o.connectListen, "connect-listen", "", "also serve a CONNECT proxy here (plain HTTP, for clients that honour HTTPS_PROXY): tunnels to the upstream are recorded, others pass untouched")
	}
	f.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:15020", "address of /healthz, /readyz and /metrics (plain HTTP)")
	f.StringVar(&o.resultsListen, "results-listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(resultsPort)), "loopback address of /results (plain HTTP); empty serves none")
	f.StringVar(&o.certFile, "cert-file", "", "serving certificate (PEM), re-read when it changes")
	f.StringVar(&o.keyFile, "key-file", "", "serving key (PEM)")
	f.StringVar(&o.upstream, "upstream", inClusterUpstream(), "the real API server")
	f.StringVar(&o.upstreamCAFile, "upstream-ca-file", serviceAccountDir+"/ca.crt", "CA bundle that verifies the real API server")
	f.StringVar(&o.release, "release", "1.37", "Kubernetes release to match requests against, from those this binary embeds")
	f.StringVar(&o.catalogFile, "catalog-file", "", "catalog to match requests against, as written by the operator (zstd-compressed JSON); takes precedence over --release")
	f.StringVar(&o.schemasFile, "schemas-file", "", "request-body schemas of --catalog-file's operations, as written by the operator (zstd-compressed JSON), for field coverage; read when the first kept body arrives")
	f.DurationVar(&o.catalogCheck, "catalog-check-interval", defaultCatalogCheck, "how often --catalog-file is looked at for a new catalog (the operator rewrites it as the cluster's API changes); 0 reads it once")
	f.StringVar(&o.collectorURL, "collector", "", "collector intake URL; empty keeps results local")
	f.StringVar(&o.collectorCAFile, "collector-ca-file", "", "CA bundle that verifies the collector")
	f.StringVar(&o.collectorTokenFile, "collector-token-file", "", "projected service account token sent to the collector")
	f.DurationVar(&o.shipInterval, "ship-interval", 5*time.Second, "how often deltas are shipped")
	f.StringVar(&o.identity.Pod, "pod-name", os.Getenv("POD_NAME"), "name of the recorded pod")
	f.StringVar(&o.identity.Namespace, "pod-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the recorded pod")
	f.StringVar(&o.identity.ServiceAccount, "service-account", os.Getenv("POD_SERVICE_ACCOUNT"), "service account of the recorded pod")
	f.StringVar(&o.source, "source", os.Getenv("POD_UID"), "unique name of this proxy for the collector (the pod UID)")
	f.BoolVar(&o.keepBodies, "keep-bodies", false, "keep capped, redacted request bodies: field coverage, and writes to objects for their history")
	f.BoolVar(&o.relay, "relay", true, "forward each client connection as bytes over a connection of its own to the API server, reading HTTP/2 and HTTP/1.1 on the way (about half the CPU per GET); false forwards every request through a reverse proxy, as when the API server cannot be reached (an --upstream that is plain http or behind a path prefix always gets the reverse proxy)")
	f.BoolVar(&o.profiling, "profiling", false, "also serve Go's profiles under /debug/pprof/ on --results-listen")
	f.IntVar(&o.maxBodyBytes, "max-body-bytes", 64<<10, "cap of kept request bodies")
	return cmd
}

// inClusterUpstream is the API server address pods are given. In env
// interception mode the webhook overrides KUBERNETES_SERVICE_HOST for the
// app containers only, and passes the real address with --upstream.
func inClusterUpstream() string {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return ""
	}
	return "https://" + net.JoinHostPort(host, port)
}

// sidecarMemoryLimit is the proxy's default soft memory limit: a sidecar runs
// in every recorded pod, so the heap is collected more eagerly as it nears
// this, instead of growing to twice the live heap. GOMEMLIMIT overrides it.
const sidecarMemoryLimit = 24 << 20

// sidecarProcs is the proxy's default GOMAXPROCS. A proxied request is a
// chain of goroutine hand-offs (the relay's two copy loops; in the reverse
// proxy the TLS reader, HTTP/2 serve loop, handler and upstream read loop);
// on one P they are run-queue operations, on several they are futex
// wake-ups of idle threads. Measured on the reverse proxy with 4 requests
// in flight on two cores: 218–300 µs of CPU per proxied GET on one P
// (median about 235) against 275–352 µs on two (median about 320). One
// core of proxying is thousands of requests per second, far above what a
// pod's clients send. GOMAXPROCS overrides it.
const sidecarProcs = 1

// sidecarGCPercent is the proxy's default GOGC: the heap may grow by half
// its live size (about 6 MiB under load: catalog, matcher, buffers, delta
// encoder) between collections rather than double. Measured side by side
// with hack/bench-proxy.sh while shipping: about 2 MiB less resident
// memory, for a few µs more CPU per GET at 16 connections. GOGC overrides
// it.
const sidecarGCPercent = 50

// tuneRuntime applies the sidecar's defaults where the environment says
// nothing.
func tuneRuntime() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(sidecarGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(sidecarMemoryLimit)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(sidecarProcs)
	}
}

func runProxy(ctx context.Context, o proxyOptions) error {
	tuneRuntime()
	if o.upstream == "" {
		return errors.New("--upstream is required outside a pod")
	}
	if o.resultsListen != "" {
		if err := checkLoopback(o.resultsListen); err != nil {
			return err
		}
	} else if o.profiling {
		return errors.New("--profiling needs --results-listen: profiles are served there")
	}
	upstream, err := url.Parse(o.upstream)
	if err != nil {
		return fmt.Errorf("parse --upstream: %w", err)
	}
	// Read again when the API server's chain does not verify: the file is
	// a mounted ConfigMap (the namespace's trust bundle, or a service
	// account's ca.crt), which the kubelet rewrites when the cluster CA is
	// rotated, and a sidecar running for weeks must follow without a
	// restart.
	upstreamRoots, err := certs.NewRootsFile(o.upstreamCAFile)
	if err != nil {
		return fmt.Errorf("load --upstream-ca-file: %w", err)
	}
	serving, err := certs.NewServingFiles(o.certFile, o.keyFile)
	if err != nil {
		return err
	}
	var catalogRead os.FileInfo
	if o.catalogFile != "" {
		catalogRead, _ = os.Stat(o.catalogFile)
	}
	cat := loadCatalog(o.catalogFile, o.schemasFile, o.release, log.Printf)
	metrics := record.NewMetrics()
	rec := record.NewRecorder(match.New(cat), metrics)
	if o.keepBodies {
		// A session that records bodies also gets the history of the
		// objects its pods write (kubectl snoop history --session).
		rec.KeepWrites()
	}
	p, err := proxy.New(proxy.Config{
		Upstream: upstream,
		// No credentials of its own: the client's are forwarded unchanged.
		Transport: &http.Transport{
			Proxy:               nil,
			TLSClientConfig:     upstreamRoots.TLSConfig(upstream.Hostname()),
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		},
		Observer:     rec,
		Identity:     o.identity,
		KeepBodies:   o.keepBodies,
		MaxBodyBytes: o.maxBodyBytes,
		ErrorLog:     log.New(os.Stderr, "proxy: ", log.LstdFlags),
	})
	if err != nil {
		return err
	}

	var shipper *record.Shipper
	if o.collectorURL != "" {
		client := &http.Client{Timeout: 10 * time.Second}
		if o.collectorCAFile != "" {
			// Read again when the collector's chain does not verify: the
			// operator rewrites the file when the CA behind the collector's
			// certificate changes (cert-manager's, at a renewal).
			roots, err := certs.NewRootsFile(o.collectorCAFile)
			if err != nil {
				return fmt.Errorf("load --collector-ca-file: %w", err)
			}
			collector, err := url.Parse(o.collectorURL)
			if err != nil {
				return fmt.Errorf("parse --collector: %w", err)
			}
			client.Transport = &http.Transport{TLSClientConfig: roots.TLSConfig(collector.Hostname())}
		}
		shipper, err = record.NewShipper(record.ShipperConfig{
			URL: o.collectorURL, Client: client, Source: o.source, Release: cat.Release,
			TokenFile: o.collectorTokenFile, Interval: o.shipInterval,
		}, rec, metrics)
		if err != nil {
			return err
		}
	}

	// Every listener before any goroutine: a port already taken ends the
	// command with nothing left running.
	listeners, err := listenAll(o.listen, o.adminListen, o.resultsListen, o.connectListen)
	if err != nil {
		return err
	}
	ln, adminLn, resultsLn, connectLn := listeners[0], listeners[1], listeners[2], listeners[3]

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { serving.Run(ctx, certs.DefaultReloadInterval); return nil })
	if o.relay && proxy.CanRelay(upstream) {
		g.Go(func() error {
			return proxy.ServeRelay(ctx, ln, proxy.RelayConfig{
				Proxy: p, Upstream: upstream, Metrics: metrics,
				UpstreamTLS: upstreamRoots.TLSConfig(upstream.Hostname()),
				Serving:     serving.TLSConfig(),
			})
		})
	} else {
		g.Go(func() error { return proxy.ServeTLS(ctx, ln, p, serving.TLSConfig()) })
	}
	g.Go(func() error { return serveHTTP(ctx, adminLn, record.AdminHandler(metrics)) })
	if resultsLn != nil {
		results := record.ResultsHandler(rec, shipper)
		if o.profiling {
			mux := http.NewServeMux()
			mux.Handle("/", results)
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			results = mux
		}
		g.Go(func() error { return serveHTTP(ctx, resultsLn, results) })
	}
	if shipper != nil {
		g.Go(func() error { shipper.Run(ctx); return nil })
	}
	if o.catalogFile != "" && o.catalogCheck > 0 {
		g.Go(func() error {
			followCatalog(ctx, o.catalogFile, catalogRead, o.schemasFile, o.catalogCheck, rec, log.Printf)
			return nil
		})
	}
	if connectLn != nil {
		intercept := []string{upstream.Host, "kubernetes.default.svc:443", "kubernetes.default.svc.cluster.local:443", "kubernetes.default:443", "kubernetes:443"}
		g.Go(func() error { return o.connect(ctx, connectLn, intercept, p, serving.GetCertificate) })
	}
	log.Printf("Recording proxy on %s for %s, matching against Kubernetes %s (%d operations)", ln.Addr(), upstream, cat.Release, len(cat.Operations))
	return g.Wait()
}

// listenAll listens on every address, nil for an empty one, or on none:
// when one fails, those opened are closed.
func listenAll(addrs ...string) ([]net.Listener, error) {
	listeners := make([]net.Listener, len(addrs))
	for i, addr := range addrs {
		if addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, opened := range listeners[:i] {
				if opened != nil {
					_ = opened.Close()
				}
			}
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		listeners[i] = ln
	}
	return listeners, nil
}

// serveHTTP serves plain HTTP on ln until ctx ends.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// errNotLoopback refuses a --results-listen that other pods could reach.
var errNotLoopback = errors.New("not a loopback address")

// checkLoopback accepts an address of 127.0.0.0/8 or ::1 only. /results
// names the pod's clients (service accounts, user agents), so it must not be
// served on the pod network; kubectl port-forward reaches loopback.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("parse --results-listen: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("check --results-listen %q: %w: /results names the pod's clients, so it is served on 127.0.0.1 or [::1] only (reach it with kubectl port-forward)", addr, errNotLoopback)
	}
	return nil
}
