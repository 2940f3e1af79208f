package testenv

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ContainerProcess is a pod's container run as a local process, the way a
// kubelet would run it, for tests and the demo on a control plane without
// nodes: its command from a local binary, its args and environment as the
// pod spec says (field references resolved from the pod, the kubernetes
// Service variables pointing at the API server), and each volume it mounts
// written to a directory with the content the kubelet would put there (the
// Secrets and ConfigMaps of the pod's namespace, service account tokens
// requested for the pod's service account). Mount paths in args are
// rewritten to those directories; nothing is written outside Dir.
type ContainerProcess struct {
	Cmd *exec.Cmd
	// Dir holds one directory per mounted volume.
	Dir string
	// Mounts maps each mount path to its directory.
	Mounts map[string]string
}

// StartContainer starts container name of pod with binary as its command,
// and extraArgs after the pod spec's (later flags win, to move listeners to
// free ports); its output goes to out. The process runs until ctx ends.
func StartContainer(ctx context.Context, c client.Reader, cfg *rest.Config, pod *corev1.Pod, name, binary, dir string, out io.Writer, extraArgs ...string) (*ContainerProcess, error) {
	container, ok := findContainer(pod, name)
	if !ok {
		return nil, fmt.Errorf("pod %s/%s has no container %s", pod.Namespace, pod.Name, name)
	}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create clientset: %w", err)
	}
	p := &ContainerProcess{Dir: dir, Mounts: map[string]string{}}
	for _, m := range container.VolumeMounts {
		vol, ok := findVolume(pod, m.Name)
		if !ok {
			return nil, fmt.Errorf("container %s mounts volume %s, which the pod lacks", name, m.Name)
		}
		target := filepath.Join(dir, m.Name)
		if err := writeVolume(ctx, c, clientset, pod, vol, target); err != nil {
			return nil, fmt.Errorf("volume %s: %w", m.Name, err)
		}
		p.Mounts[m.MountPath] = target
	}
	args := slices.Concat(container.Command[1:], container.Args, extraArgs)
	for i := range args {
		args[i] = p.rewritePaths(args[i])
	}
	env, err := containerEnv(pod, container, cfg)
	if err != nil {
		return nil, err
	}
	p.Cmd = exec.CommandContext(ctx, binary, args...)
	p.Cmd.Env = env
	p.Cmd.Stdout, p.Cmd.Stderr = out, out
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	return p, nil
}

// rewritePaths replaces a mount path in arg with its directory, the longest
// mount path first.
func (p *ContainerProcess) rewritePaths(arg string) string {
	paths := make([]string, 0, len(p.Mounts))
	for path := range p.Mounts {
		paths = append(paths, path)
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	for _, path := range paths {
		if i := strings.Index(arg, path); i >= 0 {
			return arg[:i] + p.Mounts[path] + arg[i+len(path):]
		}
	}
	return arg
}

func findContainer(pod *corev1.Pod, name string) (corev1.Container, bool) {
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if c.Name == name {
			return c, true
		}
	}
	return corev1.Container{}, false
}

func findVolume(pod *corev1.Pod, name string) (corev1.Volume, bool) {
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return corev1.Volume{}, false
}

// containerEnv is the container's environment as the kubelet gives it: the
// kubernetes Service variables (here, the API server's address) and the
// container's own, with field references resolved.
func containerEnv(pod *corev1.Pod, container corev1.Container, cfg *rest.Config) ([]string, error) {
	server, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("parse API server address: %w", err)
	}
	env := []string{"KUBERNETES_SERVICE_HOST=" + server.Hostname(), "KUBERNETES_SERVICE_PORT=" + server.Port()}
	for _, e := range container.Env {
		value := e.Value
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil {
				return nil, fmt.Errorf("env %s: only field references are supported", e.Name)
			}
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				value = pod.Name
			case "metadata.namespace":
				value = pod.Namespace
			case "metadata.uid":
				value = string(pod.UID)
			case "spec.serviceAccountName":
				value = pod.Spec.ServiceAccountName
			default:
				return nil, fmt.Errorf("env %s: field %s is not supported", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		}
		env = append(env, e.Name+"="+value)
	}
	return env, nil
}

// writeVolume writes what the kubelet would mount for vol into dir.
func writeVolume(ctx context.Context, c client.Reader, clientset kubernetes.Interface, pod *corev1.Pod, vol corev1.Volume, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	switch {
	case vol.Secret != nil:
		secret := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: vol.Secret.SecretName}, secret); err != nil {
			return err
		}
		return writeItems(dir, secret.Data, vol.Secret.Items)
	case vol.ConfigMap != nil:
		data, err := configMapData(ctx, c, pod.Namespace, vol.ConfigMap.Name)
		if err != nil {
			return err
		}
		return writeItems(dir, data, vol.ConfigMap.Items)
	case vol.Projected != nil:
		for _, src := range vol.Projected.Sources {
			switch {
			case src.ServiceAccountToken != nil:
				token, err := clientset.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
					Spec: authenticationv1.TokenRequestSpec{
						Audiences:         audiences(src.ServiceAccountToken.Audience),
						ExpirationSeconds: src.ServiceAccountToken.ExpirationSeconds,
						BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
					},
				}, metav1.CreateOptions{})
				if err != nil {
					return fmt.Errorf("request token: %w", err)
				}
				if err := os.WriteFile(filepath.Join(dir, src.ServiceAccountToken.Path), []byte(token.Status.Token), 0o600); err != nil {
					return err
				}
			case src.ConfigMap != nil:
				data, err := configMapData(ctx, c, pod.Namespace, src.ConfigMap.Name)
				if err != nil {
					return err
				}
				if err := writeItems(dir, data, src.ConfigMap.Items); err != nil {
					return err
				}
			case src.DownwardAPI != nil:
				if err := os.WriteFile(filepath.Join(dir, "namespace"), []byte(pod.Namespace), 0o600); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return fmt.Errorf("volume %s: only Secret, ConfigMap and projected volumes are supported", vol.Name)
}

// audiences is a token's audience; empty means the API server's own.
func audiences(audience string) []string {
	if audience == "" {
		return nil
	}
	return []string{audience}
}

func configMapData(ctx context.Context, c client.Reader, ns, name string) (map[string][]byte, error) {
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cm); err != nil {
		return nil, err
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return data, nil
}

// writeItems writes every key, or only items when the volume lists some.
func writeItems(dir string, data map[string][]byte, items []corev1.KeyToPath) error {
	if len(items) == 0 {
		for k := range data {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
	}
	for _, item := range items {
		value, ok := data[item.Key]
		if !ok {
			return fmt.Errorf("key %s is missing", item.Key)
		}
		path := filepath.Join(dir, item.Path)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(path, value, 0o600); err != nil {
			return err
		}
	}
	return nil
}
