package main

import (
	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeconfigFlags are the kubeconfig flags the subcommands that talk to a
// cluster share: --kubeconfig and --context, as kubectl reads them.
type kubeconfigFlags struct {
	loading   *clientcmd.ClientConfigLoadingRules
	overrides *clientcmd.ConfigOverrides
}

// addKubeconfigFlags registers the flags; kubeconfigHelp says what the
// kubeconfig is for.
func addKubeconfigFlags(flags *pflag.FlagSet, kubeconfigHelp string) *kubeconfigFlags {
	k := &kubeconfigFlags{loading: clientcmd.NewDefaultClientConfigLoadingRules(), overrides: &clientcmd.ConfigOverrides{}}
	flags.StringVar(&k.loading.ExplicitPath, "kubeconfig", "", kubeconfigHelp)
	flags.StringVar(&k.overrides.CurrentContext, "context", "", "kubeconfig context to use")
	return k
}

// clientConfig is the kubeconfig the flags select, loaded when used.
func (k *kubeconfigFlags) clientConfig() clientcmd.ClientConfig {
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(k.loading, k.overrides)
}
