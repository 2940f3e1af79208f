package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/provenance"
)

// historyFlags are shared by history and its diff and bisect views.
type historyFlags struct {
	logs       []string
	session    string
	kubeconfig *kubeconfigFlags
	namespace  string
	output     string
}

func (f *historyFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringArrayVar(&f.logs, "audit-log", nil, "audit log file at Request or RequestResponse level (repeatable, oldest first; .gz, or - for standard input)")
	cmd.PersistentFlags().StringVar(&f.session, "session", "", "[NAMESPACE/]NAME of a SnoopSession that records bodies: read the writes its pods made, from its results (instead of --audit-log)")
	f.kubeconfig = addKubeconfigFlags(cmd.PersistentFlags(), "with --session, kubeconfig to reach the cluster with")
	cmd.PersistentFlags().StringVarP(&f.namespace, "namespace", "n", "", "the object's namespace (default: any; needed when the name is used in several)")
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "text", "output format: "+strings.Join(provenance.Formats, ", "))
}

// read reads the history of RESOURCE/NAME from the audit logs or the
// session.
func (f *historyFlags) read(cmd *cobra.Command, arg string) (*provenance.History, error) {
	if (len(f.logs) == 0) == (f.session == "") {
		return nil, fmt.Errorf("give either --audit-log or --session")
	}
	if !slices.Contains(provenance.Formats, f.output) && f.output != "md" {
		return nil, fmt.Errorf("unknown output format %q: use one of %s", f.output, strings.Join(provenance.Formats, ", "))
	}
	target, err := provenance.ParseTarget(arg, f.namespace)
	if err != nil {
		return nil, err
	}
	sources := logSources(f.logs)
	if f.session != "" {
		if sources, err = f.sessionWrites(cmd); err != nil {
			return nil, err
		}
	}
	h, err := provenance.Read(cmd.Context(), sources, target, provenance.Options{OnMalformed: malformedWarner()})
	if err != nil {
		return nil, err
	}
	if h.Stats.Malformed > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %d malformed lines skipped\n", h.Stats.Malformed)
	}
	return h, nil
}

// sessionWrites reads the writes a session kept, from its persisted
// results, as an audit log.
func (f *historyFlags) sessionWrites(cmd *cobra.Command) ([]audit.Source, error) {
	namespace, name, ok := strings.Cut(f.session, "/")
	if !ok {
		namespace, name = "", f.session
	}
	sr, err := loadSessionResults(cmd.Context(), f.kubeconfig, namespace, name)
	if err != nil {
		return nil, err
	}
	session, delta := sr.session, &sr.state.Delta
	if len(delta.Writes) == 0 {
		return nil, fmt.Errorf("SnoopSession %s/%s kept no writes: a session keeps them when it records bodies (spec.recording.requestBodies: true)", session.Namespace, session.Name)
	}
	if delta.WritesDropped > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: SnoopSession %s/%s keeps its newest %d writes; %d older ones are not in this history\n",
			session.Namespace, session.Name, len(delta.Writes), delta.WritesDropped)
	}
	src, err := provenance.WritesSource("SnoopSession "+session.Namespace+"/"+session.Name, delta.Writes)
	if err != nil {
		return nil, err
	}
	return []audit.Source{src}, nil
}

const historyHelp = `Every write to one object, built-in or custom, from API server audit logs
that carry bodies (Request or RequestResponse level), or from the writes a
SnoopSession's pods made while it recorded bodies (--session): the time,
user, user agent and write (create, update, patch, apply, delete; writes to status and
scale are named apart), and with --spec the object after each write.

The object comes from the API server's response where the log has it
(RequestResponse; a session has the requests only). Otherwise it is the request body of a create or update,
or the request applied to the previous version: the audit log does not say
a patch's type, so a JSON array is a JSON Patch, a server-side apply (a
whole object with a fieldManager) is merged as a merge patch, and other
patches are strategic merge patches for built-in kinds and merge patches
for custom resources; the OBJECT column says which and where it is an
approximation. An object deleted and created again keeps its name and gets
a new UID. Secret data and stringData values are replaced by "<redacted>"
as the log is read.

RESOURCE is the plural resource or the kind, optionally with its group:
deployments.apps/web, Deployment/web, configmaps/settings,
widgets.example.com/w1.`

func newHistoryCommand() *cobra.Command {
	var (
		flags   historyFlags
		objects bool
	)
	cmd := &cobra.Command{
		Use:   "history RESOURCE/NAME (--audit-log FILE... | --session [NS/]NAME) [-n NAMESPACE] [--spec] [-o text|json|markdown]",
		Short: "Show how an object evolved: every write, by whom, and the object after each",
		Long:  historyHelp,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := flags.read(cmd, args[0])
			if err != nil {
				return err
			}
			return provenance.WriteHistory(cmd.OutOrStdout(), flags.output, h, provenance.RenderOptions{Objects: objects})
		},
	}
	flags.register(cmd)
	cmd.Flags().BoolVar(&objects, "spec", false, "print the object after each version")

	diff := &cobra.Command{
		Use:   "diff RESOURCE/NAME V1 V2 --audit-log FILE...",
		Short: "Show field by field, at any depth, what changed between two versions of an object",
		Long: `Field by field, at any depth, what differs between the objects of two
versions (numbers as history prints them). List elements with a name
(containers, ports, env) are matched by name, others by position.
metadata.managedFields and metadata.resourceVersion are left out.`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := flags.read(cmd, args[0])
			if err != nil {
				return err
			}
			from, err := versionArg(h, args[1])
			if err != nil {
				return err
			}
			to, err := versionArg(h, args[2])
			if err != nil {
				return err
			}
			return provenance.WriteDiff(cmd.OutOrStdout(), flags.output, h, provenance.DiffResult{
				From: from.Number, To: to.Number, Changes: provenance.Diff(from.Object, to.Object)})
		},
	}

	var where []string
	bisect := &cobra.Command{
		Use:   "bisect RESOURCE/NAME --where FIELD=VALUE[,FIELD=VALUE...] --audit-log FILE...",
		Short: "Find the first version of an object where fields hold given values",
		Long: `The first version whose object has every FIELD=VALUE. Field paths are
dotted; list steps may be written name[] or name, and conditions through the
same list must hold in one element of it: --where
spec.template.spec.containers.name=app,spec.template.spec.containers.image=nginx:1.27
finds the first version where the container app runs nginx:1.27. Values are
compared as text (3, true, nginx:1.27).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(where) == 0 {
				return fmt.Errorf("--where is required")
			}
			var conds []provenance.Condition
			for _, w := range where {
				c, err := provenance.ParseWhere(w)
				if err != nil {
					return err
				}
				conds = append(conds, c...)
			}
			h, err := flags.read(cmd, args[0])
			if err != nil {
				return err
			}
			result := provenance.BisectResult{Version: provenance.Bisect(h, conds)}
			for _, c := range conds {
				result.Where = append(result.Where, c.String())
			}
			return provenance.WriteBisect(cmd.OutOrStdout(), flags.output, h, result)
		},
	}
	bisect.Flags().StringArrayVar(&where, "where", nil, "FIELD=VALUE[,FIELD=VALUE...] (repeatable; all must hold)")
	cmd.AddCommand(diff, bisect)
	return cmd
}

// versionArg finds a version by the number history prints; its object must
// be known to compare it.
func versionArg(h *provenance.History, arg string) (*provenance.Version, error) {
	n, err := strconv.Atoi(arg)
	if err != nil || n < 1 || n > len(h.Versions) {
		return nil, fmt.Errorf("version %q: history has versions 1 to %d", arg, len(h.Versions))
	}
	v := &h.Versions[n-1]
	if v.Object == nil {
		return nil, fmt.Errorf("version %d: the object is not known (%s)", n, v.Source)
	}
	return v, nil
}
