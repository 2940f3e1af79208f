// Command node makes the files of the throwaway single-node cluster that
// hack/node/node.sh runs (`make node-up`):
//
//	node pki          the node's CA, kube-apiserver's serving certificate,
//	                  the service-account key pair, a client certificate
//	                  and kubeconfig per component (CoreDNS included), and
//	                  the admin kubeconfig
//	node pause-image  the sandbox (pause) image archive, from the static
//	                  binary of ./hack/node/pause
//
// node.sh starts and stops the processes; this command only writes files,
// so a second run with the same flags changes nothing that is still valid.
// Run it from the module root.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: node pki|pause-image [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "pki":
		err = runPKI(os.Args[2:])
	case "pause-image":
		err = runPauseImage(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want pki or pause-image", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
}

func runPKI(args []string) error {
	fs := flag.NewFlagSet("pki", flag.ExitOnError)
	var (
		dir       = fs.String("dir", "bin/node", "Directory for pki/, etc/*.kubeconfig and the admin kubeconfig")
		nodeName  = fs.String("node-name", "apisnoop-node", "Name of the node")
		nodeIP    = fs.String("node-ip", "", "Address of the node and of kube-apiserver")
		serviceIP = fs.String("service-ip", "", "Cluster IP of the kubernetes Service")
		port      = fs.Int("port", 6443, "kube-apiserver's secure port")
	)
	_ = fs.Parse(args)
	n := Node{Name: *nodeName, IP: net.ParseIP(*nodeIP), ServiceIP: net.ParseIP(*serviceIP), Port: *port}
	if n.IP == nil || n.ServiceIP == nil {
		return fmt.Errorf("-node-ip %q and -service-ip %q must be IP addresses", *nodeIP, *serviceIP)
	}
	return WritePKI(*dir, n, time.Now())
}

func runPauseImage(args []string) error {
	fs := flag.NewFlagSet("pause-image", flag.ExitOnError)
	var (
		out = fs.String("out", "bin/node/pause.tar", "Image archive to write")
		ref = fs.String("ref", "apisnoop.dev/node-pause:1", "Name of the image in the archive")
	)
	_ = fs.Parse(args)
	return WritePauseImage(*out, *ref, time.Unix(0, 0).UTC())
}
