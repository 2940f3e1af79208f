package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/catalog/releases"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/match"
	"apisnoop.dev/kube-apisnoop/internal/proxy"
	"apisnoop.dev/kube-apisnoop/internal/proxy/resttransport"
	"apisnoop.dev/kube-apisnoop/internal/record"
	"apisnoop.dev/kube-apisnoop/internal/report"
)

// exitError carries the recorded command's exit code to kubectl-snoop's own.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("command exited with status %d", e.code) }

func newRecordCommand() *cobra.Command {
	var (
		release, output, outFile string
		untested, bodies         bool
		maxRows, maxBodyBytes    int
	)
	var kubeconfig *kubeconfigFlags
	cmd := &cobra.Command{
		Use:   "record [--release 1.37|cluster] [--bodies] [-o table|json|markdown|html] [--out FILE] -- COMMAND [ARG...]",
		Short: "Run a command through a local recording proxy and print the API coverage of what it did",
		Long: `Starts a recording proxy on loopback with a throwaway CA, points COMMAND at it
with a kubeconfig of its own (KUBECONFIG), forwards every request to the real
API server with your kubeconfig's credentials (client certificates, tokens,
exec plugins), and prints the coverage of what COMMAND did on standard error
(or into --out). COMMAND's output and exit status are its own.

With --bodies, the proxy also reads the JSON request bodies (Secret data
redacted, at most --max-body-bytes each) against the release's schemas, and
the coverage tells which fields they set, which they used that the schema
does not know, and which had values of the wrong type.

--release cluster measures against the cluster's own API, read from its
OpenAPI v3 documents when the command starts: custom resources and
aggregated APIs count, and with --bodies their fields are read against the
schemas the cluster publishes (a CRD's structural schema). A custom
resource COMMAND itself defines is not in it.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if maxBodyBytes <= 0 {
				return fmt.Errorf("--max-body-bytes must be positive, not %d", maxBodyBytes)
			}
			clientConfig := kubeconfig.clientConfig()
			restConfig, err := clientConfig.ClientConfig()
			if err != nil {
				return fmt.Errorf("load kubeconfig: %w", err)
			}
			namespace, _, _ := clientConfig.Namespace()
			if release == "" {
				release = serverRelease(restConfig)
			}
			cat, err := loadReleaseCatalog(cmd.Context(), release, restConfig)
			if err != nil {
				return err
			}
			rec := record.NewRecorder(match.New(cat), nil)

			keep := bodyCapture{keep: bodies, maxBytes: maxBodyBytes}
			code, err := runRecorded(cmd.Context(), restConfig, namespace, rec, keep, args)
			if err != nil {
				return err
			}
			out := cmd.ErrOrStderr()
			if outFile != "" {
				f, err := os.Create(outFile)
				if err != nil {
					return fmt.Errorf("create %s: %w", outFile, err)
				}
				defer f.Close()
				out = f
			}
			rep := coverage.NewReport(cat, rec.Total())
			// The command's name only: its arguments may hold a credential.
			source := "kubectl snoop record of " + filepath.Base(args[0])
			if err := writeReport(out, output, rep, report.Options{Untested: untested, MaxRows: maxRows}, source); err != nil {
				return err
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&release, "release", "", "Kubernetes release to measure against (1.31 to 1.37, or cluster: the cluster's own API, custom resources included); default: the server's own, if supported")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json, markdown or html (one self-contained page)")
	cmd.Flags().StringVar(&outFile, "out", "", "write the coverage to this file instead of standard error")
	cmd.Flags().BoolVar(&untested, "untested", false, "also list the eligible operations no request hit")
	cmd.Flags().IntVar(&maxRows, "max-rows", 0, "cap long tables at this many rows (0: all)")
	cmd.Flags().BoolVar(&bodies, "bodies", false, "read request bodies for field coverage (which fields COMMAND set)")
	cmd.Flags().IntVar(&maxBodyBytes, "max-body-bytes", 1<<20, "with --bodies, read at most this many bytes of a body; longer ones count as malformed")
	kubeconfig = addKubeconfigFlags(cmd.Flags(), "kubeconfig whose credentials reach the real API server")
	return cmd
}

// loadReleaseCatalog returns the catalog of an embedded release, or for
// "cluster" the one of the cluster cfg reaches, from its OpenAPI v3
// documents as they are now (with its custom resources' body schemas).
func loadReleaseCatalog(ctx context.Context, release string, cfg *rest.Config) (*catalog.Catalog, error) {
	if release != snoopv1alpha1.ClusterRelease {
		return catalog.Load(release)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create discovery client: %w", err)
	}
	// The resolver logs the OpenAPI documents it leaves out (an aggregated
	// API that is down) through controller-runtime's logger, which this
	// command never sets: give it one writing to standard error.
	ctx = logf.IntoContext(ctx, logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, nil)))
	return (&releases.Resolver{Discovery: disco}).Resolve(ctx, release)
}

// serverRelease is the minor release the server reports, when it is one the
// catalogs know, else the newest known one.
func serverRelease(cfg *rest.Config) string {
	releases := catalog.Releases()
	newest := releases[len(releases)-1]
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return newest
	}
	v, err := disco.ServerVersion()
	if err != nil {
		return newest
	}
	if r := catalog.NormalizeRelease(v.GitVersion); slices.Contains(releases, r) {
		return r
	}
	return newest
}

// bodyCapture says whether the proxy keeps request bodies, and how much of
// each.
type bodyCapture struct {
	keep     bool
	maxBytes int
}

// runRecorded serves the recording proxy on loopback for the command's
// lifetime and returns the command's exit code.
func runRecorded(ctx context.Context, upstream *rest.Config, namespace string, obs record.Observer, bodies bodyCapture, args []string) (int, error) {
	upstreamURL, err := url.Parse(upstream.Host)
	if err != nil {
		return 0, fmt.Errorf("parse API server address %q: %w", upstream.Host, err)
	}
	normal, upgrade, err := resttransport.For(upstream)
	if err != nil {
		return 0, err
	}
	p, err := proxy.New(proxy.Config{
		Upstream: upstreamURL, Transport: normal, UpgradeTransport: upgrade, Observer: obs,
		KeepBodies: bodies.keep, MaxBodyBytes: bodies.maxBytes,
		ErrorLog: log.New(io.Discard, "", 0),
	})
	if err != nil {
		return 0, err
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("localhost", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		return 0, fmt.Errorf("create throwaway certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return 0, fmt.Errorf("load throwaway certificate: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("listen on loopback: %w", err)
	}
	serveCtx, stopServing := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- proxy.Serve(serveCtx, ln, withoutClientCredentials(p), cert) }()

	dir, err := os.MkdirTemp("", "kubectl-snoop-record")
	if err != nil {
		stopServing()
		return 0, fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeProxyKubeconfig(kubeconfig, "https://"+ln.Addr().String(), certPEM, namespace); err != nil {
		stopServing()
		return 0, err
	}

	command := exec.CommandContext(ctx, args[0], args[1:]...)
	command.Stdin, command.Stdout, command.Stderr = os.Stdin, os.Stdout, os.Stderr
	command.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	runErr := command.Run()

	// The command is done: let its last requests finish, then stop.
	stopServing()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "warning: recording proxy:", err)
	}
	var exit *exec.ExitError
	switch {
	case runErr == nil:
		return 0, nil
	case errors.As(runErr, &exit):
		return exit.ExitCode(), nil
	}
	return 0, fmt.Errorf("run %s: %w", args[0], runErr)
}

// placeholderToken is the credential of the command's kubeconfig. It exists
// only so kubectl does not prompt for a user name; the proxy drops it and
// the user's own credentials go upstream.
const placeholderToken = "kubectl-snoop-record-placeholder"

// withoutClientCredentials drops the command's Authorization header before
// proxying, so the upstream transport's credentials apply (client-go's token
// and exec-plugin wrappers keep a header that is already set).
func withoutClientCredentials(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Authorization")
		h.ServeHTTP(w, r)
	})
}

// writeProxyKubeconfig points a client at the proxy. It holds no real
// credential: the proxy adds the user's own on the way upstream.
func writeProxyKubeconfig(path, server string, ca []byte, namespace string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["snoop"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["snoop"] = &clientcmdapi.AuthInfo{Token: placeholderToken}
	cfg.Contexts["snoop"] = &clientcmdapi.Context{Cluster: "snoop", AuthInfo: "snoop", Namespace: namespace}
	cfg.CurrentContext = "snoop"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write proxy kubeconfig: %w", err)
	}
	return nil
}
