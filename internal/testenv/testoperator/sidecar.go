package testoperator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"apisnoop.dev/kube-apisnoop/internal/targets"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
	"apisnoop.dev/kube-apisnoop/internal/webhook"
)

// Sidecar is an injected pod's recording proxy run as a local process (see
// testenv.StartContainer), and a kubeconfig with which a client talks to the API
// server through it as the pod's service account would: trusting the
// pod's bundle, with a token of its service account.
type Sidecar struct {
	Process *testenv.ContainerProcess
	// Kubeconfig is the path of the kubeconfig through the sidecar.
	Kubeconfig string
	// ResultsURL is the sidecar's /results, on loopback.
	ResultsURL string
}

// StartSidecar runs pod's injected sidecar from binary (snoop-proxy) on free
// loopback ports, shipping every shipInterval, waits until it is ready, and
// writes the kubeconfig. The pod's service account is created when missing and bound to role (a
// ClusterRole such as "cluster-admin"; envtest has no aggregated roles) in the pod's namespace. Files go into dir,
// the sidecar's output to out.
func StartSidecar(ctx context.Context, admin client.Client, cfg *rest.Config, pod *corev1.Pod, binary, dir, role string, shipInterval time.Duration, out io.Writer) (*Sidecar, error) {
	ports := make([]int, 3)
	for i := range ports {
		p, err := testenv.FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	sa := pod.Spec.ServiceAccountName
	if err := admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: pod.Namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create service account: %w", err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: sa + "-" + role, Namespace: pod.Namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: pod.Namespace}},
	}
	if err := admin.Create(ctx, binding); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("bind service account: %w", err)
	}
	proc, err := testenv.StartContainer(ctx, admin, cfg, pod, targets.ProxyContainerName, binary, filepath.Join(dir, "pod"), out,
		fmt.Sprintf("--listen=127.0.0.1:%d", ports[0]), fmt.Sprintf("--admin-listen=127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--results-listen=127.0.0.1:%d", ports[2]), "--ship-interval="+shipInterval.String())
	if err != nil {
		return nil, err
	}
	s := &Sidecar{Process: proc, ResultsURL: fmt.Sprintf("http://127.0.0.1:%d/results", ports[2])}
	ready := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		resp, err := http.Get(ready)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("sidecar not ready: %w", err), s.Stop())
	}

	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	token, err := clientset.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("request the pod's token: %w", err), s.Stop())
	}
	bundle := &corev1.ConfigMap{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: webhook.TrustBundleConfigMap}, bundle); err != nil {
		return nil, errors.Join(fmt.Errorf("read the pod's trust bundle: %w", err), s.Stop())
	}
	s.Kubeconfig = filepath.Join(dir, "kubeconfig")
	err = clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"pod": {Server: fmt.Sprintf("https://127.0.0.1:%d", ports[0]), CertificateAuthorityData: []byte(bundle.Data[webhook.TrustBundleKey])}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"pod": {Token: token.Status.Token}},
		Contexts:       map[string]*clientcmdapi.Context{"pod": {Cluster: "pod", AuthInfo: "pod", Namespace: pod.Namespace}},
		CurrentContext: "pod",
	}, s.Kubeconfig)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("write kubeconfig: %w", err), s.Stop())
	}
	return s, nil
}

// Stop kills the sidecar and waits for it.
func (s *Sidecar) Stop() error {
	if err := s.Process.Cmd.Process.Kill(); err != nil {
		return err
	}
	_ = s.Process.Cmd.Wait()
	return nil
}
