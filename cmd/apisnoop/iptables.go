package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"apisnoop.dev/kube-apisnoop/internal/redirect"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

func newIPTablesCommand() *cobra.Command {
	var (
		serviceHost string
		servicePort uint16
		proxyPort   uint16
		excludeUID  uint32
		cleanup     bool
	)
	defaultPort, _ := strconv.ParseUint(os.Getenv("KUBERNETES_SERVICE_PORT"), 10, 16)
	cmd := &cobra.Command{
		Use:   "iptables",
		Short: "Redirect the pod's connections to the API server to the recording proxy: the init container",
		Long: `Installs, in the pod's network namespace, a NAT rule that sends TCP
connections to the kubernetes Service (KUBERNETES_SERVICE_HOST and _PORT, as
the kubelet sets them) to the proxy on 127.0.0.1:--proxy-port, except those of
--exclude-uid (the proxy's own). The rules are nftables rules in a table of
their own, written through netlink; installing twice replaces them and
--cleanup removes them.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cleanup {
				return redirect.Remove()
			}
			ip := net.ParseIP(serviceHost)
			if ip == nil {
				return fmt.Errorf("--service-host %q is not an IP address", serviceHost)
			}
			if servicePort == 0 {
				return errors.New("--service-port is required outside a pod")
			}
			rules := redirect.Rules{ServiceIP: ip, ServicePort: servicePort, ProxyPort: proxyPort, ExcludeUID: excludeUID}
			if err := redirect.Install(rules); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Redirecting TCP to %s to 127.0.0.1:%d, except user %d\n",
				net.JoinHostPort(serviceHost, strconv.Itoa(int(servicePort))), proxyPort, excludeUID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&serviceHost, "service-host", os.Getenv("KUBERNETES_SERVICE_HOST"), "the kubernetes Service's IP")
	f.Uint16Var(&servicePort, "service-port", uint16(defaultPort), "the kubernetes Service's port")
	f.Uint16Var(&proxyPort, "proxy-port", webhook.ProxyPort, "the recording proxy's port on loopback")
	f.Uint32Var(&excludeUID, "exclude-uid", uint32(webhook.ProxyUID), "the recording proxy's user, whose connections are not redirected")
	f.BoolVar(&cleanup, "cleanup", false, "remove the rules instead")
	return cmd
}
