package results

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snoopv1alpha1 "apisnoop.dev/kube-apisnoop/api/v1alpha1"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/report"
)

// SessionLabel, on a results ConfigMap, names its session (shortened with a
// hash when the name is longer than a label value may be).
const SessionLabel = "snoop.apisnoop.dev/session"

// Keys of a results ConfigMap. Every one holds IndexKey and one shard of
// the state, binaryData ShardKeyPrefix+"<i>": the zstd-compressed JSON of
// the State, cut in order into the ConfigMaps named by Names. The first
// (shard 0) also holds ReportKey.
const (
	IndexKey       = "index.json"
	ReportKey      = "report.md"
	ShardKeyPrefix = "state.json.zst."
)

// Sizes. The API server refuses a ConfigMap whose data exceeds 1 MiB, and
// etcd one whose whole object does; binaryData counts at its base64 size in
// JSON. payloadBudget bounds what a ConfigMap's values take in its JSON form
// (shard in base64, escaped report, index), leaving the rest of the MiB to
// keys, metadata and the managedFields the API server adds.
const (
	maxConfigMapBytes = 1 << 20
	payloadBudget     = 900 << 10
	// reportBudget bounds report.md, in its JSON-escaped form, so that the
	// first ConfigMap still carries a large shard.
	reportBudget = 256 << 10
	// indexReserve is room for index.json, which is far smaller.
	indexReserve = 1 << 10
)

// ErrNoResults says there is no results ConfigMap to read.
var ErrNoResults = errors.New("no results")

// errCorrupt marks results that are there but cannot be read back whole:
// a shard missing, extra, from another write, or damaged.
var errCorrupt = errors.New("results incomplete or corrupt")

// index says what a reader needs to put the shards together and check them.
// Every ConfigMap of one write holds the same index, so a shard left from
// another write is told apart by its checksum.
type index struct {
	// Format is the version of this layout.
	Format int `json:"format"`
	// Shards is the number of ConfigMaps.
	Shards int `json:"shards"`
	// Bytes is the length of the compressed state, all shards together.
	Bytes int `json:"bytes"`
	// SHA256 is the hex SHA-256 of the compressed state.
	SHA256 string `json:"sha256"`
}

const indexFormat = 1

// ConfigMaps returns session's results as ConfigMaps in its namespace,
// named Names(session.Name, n), each controlled by the session (deleting the
// session deletes them) and labelled as the operator's and the session's.
// Equal input gives equal output. A writer that creates or updates them
// should then delete the session's other results ConfigMaps, shards of an
// earlier, larger write, which FromConfigMaps refuses as extra.
//
// c may be nil when the session's catalog is not available: the state is
// kept whole, and report.md says it could not be measured.
func ConfigMaps(session *snoopv1alpha1.SnoopSession, st *State, c *catalog.Catalog) ([]*corev1.ConfigMap, error) {
	data, err := encode(st)
	if err != nil {
		return nil, err
	}
	md := cutReport(markdown(st, c), session, reportBudget)

	// Cut the state: the first ConfigMap makes room for report.md.
	firstCap := base64Capacity(payloadBudget - indexReserve - escapedLen(md))
	restCap := base64Capacity(payloadBudget - indexReserve)
	shards := [][]byte{data[:min(len(data), firstCap)]}
	for rest := data[len(shards[0]):]; len(rest) > 0; {
		n := min(len(rest), restCap)
		shards = append(shards, rest[:n])
		rest = rest[n:]
	}

	sum := sha256.Sum256(data)
	idx, err := json.Marshal(index{Format: indexFormat, Shards: len(shards), Bytes: len(data), SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		return nil, fmt.Errorf("encode results index: %w", err)
	}
	names := Names(session.Name, len(shards))
	owner := metav1.NewControllerRef(session, snoopv1alpha1.GroupVersion.WithKind("SnoopSession"))
	cms := make([]*corev1.ConfigMap, len(shards))
	for i, shard := range shards {
		cm := &corev1.ConfigMap{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{
				Name:            names[i],
				Namespace:       session.Namespace,
				Labels:          Labels(session.Name),
				OwnerReferences: []metav1.OwnerReference{*owner},
			},
			Data:       map[string]string{IndexKey: string(idx)},
			BinaryData: map[string][]byte{ShardKeyPrefix + strconv.Itoa(i): shard},
		}
		if i == 0 {
			cm.Data[ReportKey] = md
		}
		cms[i] = cm
	}
	return cms, nil
}

// FromConfigMaps puts a state together from the results ConfigMaps of one
// session, in any order. It fails, wrapping ErrNoResults, when there are
// none, and with an error naming the ConfigMap when a shard is missing,
// extra, from another write or damaged.
func FromConfigMaps(cms []corev1.ConfigMap) (*State, error) {
	st, _, err := assemble(cms)
	return st, err
}

// shardOf is one results ConfigMap, read.
type shardOf struct {
	name  string
	n     int
	idx   index
	raw   string
	shard []byte
}

func assemble(cms []corev1.ConfigMap) (*State, []string, error) {
	if len(cms) == 0 {
		return nil, nil, ErrNoResults
	}
	shards := make([]shardOf, 0, len(cms))
	for i := range cms {
		s, err := readShard(&cms[i])
		if err != nil {
			return nil, nil, err
		}
		shards = append(shards, s)
	}
	slices.SortFunc(shards, func(a, b shardOf) int { return a.n - b.n })

	head := shards[0]
	if head.n != 0 {
		return nil, nil, fmt.Errorf("%w: missing shard 0 (the first ConfigMap, with %s and %s)", errCorrupt, IndexKey, ReportKey)
	}
	idx := head.idx
	if idx.Format != indexFormat {
		return nil, nil, fmt.Errorf("%w: ConfigMap %s has format %d, this program reads %d", errCorrupt, head.name, idx.Format, indexFormat)
	}
	if idx.Shards < 1 || idx.Shards > maxShards {
		return nil, nil, fmt.Errorf("%w: ConfigMap %s: index names %d shards", errCorrupt, head.name, idx.Shards)
	}
	var missing []string
	addMissing := func(n int) {
		if len(missing) < 10 {
			missing = append(missing, strconv.Itoa(n))
		} else if len(missing) == 10 {
			missing = append(missing, "...")
		}
	}
	next := 0
	for i, s := range shards {
		if i > 0 && s.n == shards[i-1].n {
			return nil, nil, fmt.Errorf("%w: shard %d is in both ConfigMap %s and %s", errCorrupt, s.n, shards[i-1].name, s.name)
		}
		if s.n >= idx.Shards {
			return nil, nil, fmt.Errorf("%w: extra ConfigMap %s holds shard %d, but %s of %s says the results have %d shards",
				errCorrupt, s.name, s.n, IndexKey, head.name, idx.Shards)
		}
		if s.raw != head.raw {
			return nil, nil, fmt.Errorf("%w: ConfigMap %s is from another write of the results than %s (index %s, want %s)",
				errCorrupt, s.name, head.name, s.raw, head.raw)
		}
		for ; next < s.n; next++ {
			addMissing(next)
		}
		next = s.n + 1
	}
	for ; next < idx.Shards; next++ {
		addMissing(next)
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("%w: missing shard %s of %d (ConfigMap %s and its siblings)",
			errCorrupt, strings.Join(missing, ", "), idx.Shards, head.name)
	}

	var data []byte
	names := make([]string, len(shards))
	for i, s := range shards {
		data = append(data, s.shard...)
		names[i] = s.name
	}
	sum := sha256.Sum256(data)
	if len(data) != idx.Bytes || hex.EncodeToString(sum[:]) != idx.SHA256 {
		return nil, nil, fmt.Errorf("%w: the shards of %s hold %d bytes with SHA-256 %x, the index says %d bytes with %s",
			errCorrupt, head.name, len(data), sum, idx.Bytes, idx.SHA256)
	}
	st, err := decode(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", errCorrupt, head.name, err)
	}
	return st, names, nil
}

func readShard(cm *corev1.ConfigMap) (shardOf, error) {
	s := shardOf{name: cm.Namespace + "/" + cm.Name, n: -1, raw: cm.Data[IndexKey]}
	if s.raw == "" {
		return s, fmt.Errorf("%w: ConfigMap %s has no %s", errCorrupt, s.name, IndexKey)
	}
	if err := json.Unmarshal([]byte(s.raw), &s.idx); err != nil {
		return s, fmt.Errorf("%w: ConfigMap %s: read %s: %w", errCorrupt, s.name, IndexKey, err)
	}
	for key, value := range cm.BinaryData {
		suffix, ok := strings.CutPrefix(key, ShardKeyPrefix)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(suffix)
		if err != nil || n < 0 || strconv.Itoa(n) != suffix {
			return s, fmt.Errorf("%w: ConfigMap %s: bad shard key %q", errCorrupt, s.name, key)
		}
		if s.n >= 0 {
			return s, fmt.Errorf("%w: ConfigMap %s holds two shards", errCorrupt, s.name)
		}
		s.n, s.shard = n, value
	}
	if s.n < 0 {
		return s, fmt.Errorf("%w: ConfigMap %s holds no %s<i> shard", errCorrupt, s.name, ShardKeyPrefix)
	}
	return s, nil
}

// Load reads session's results from its ConfigMaps, found by label and
// kept only when the session controls them (a namesake's leftovers are
// not), and returns them with the ConfigMaps' names in shard order. A
// session with no results ConfigMap yet has an empty state and no names:
// not an error, since every session starts so. session needs its namespace
// and name; its UID, when set, is checked against the owner references.
func Load(ctx context.Context, r client.Reader, session *snoopv1alpha1.SnoopSession) (*State, []string, error) {
	var list corev1.ConfigMapList
	if err := r.List(ctx, &list, client.InNamespace(session.Namespace), client.MatchingLabels(Labels(session.Name))); err != nil {
		return nil, nil, fmt.Errorf("list results ConfigMaps of SnoopSession %s/%s: %w", session.Namespace, session.Name, err)
	}
	cms := slices.DeleteFunc(list.Items, func(cm corev1.ConfigMap) bool { return !controlledBy(&cm, session) })
	if len(cms) == 0 {
		return &State{}, nil, nil
	}
	st, names, err := assemble(cms)
	if err != nil {
		return nil, nil, fmt.Errorf("load results of SnoopSession %s/%s: %w", session.Namespace, session.Name, err)
	}
	for i := range names {
		_, names[i], _ = strings.Cut(names[i], "/")
	}
	return st, names, nil
}

func controlledBy(cm *corev1.ConfigMap, session *snoopv1alpha1.SnoopSession) bool {
	ref := metav1.GetControllerOf(cm)
	return ref != nil && ref.APIVersion == snoopv1alpha1.GroupVersion.String() && ref.Kind == "SnoopSession" &&
		ref.Name == session.Name && (session.UID == "" || ref.UID == session.UID)
}

// Names returns the names of a session's results ConfigMaps when there are
// shards of them: "<session>-results", then "<session>-results-1", "-2", ...
// A session name too long for the suffix is shortened and given a hash of
// the whole name, so names stay valid, at most 253 characters, and
// distinct per session.
func Names(session string, shards int) []string {
	base := shorten(session, maxNameLen-len(nameSuffix)-len("-")-maxShardDigits) + nameSuffix
	names := make([]string, shards)
	for i := range names {
		names[i] = base
		if i > 0 {
			names[i] += "-" + strconv.Itoa(i)
		}
	}
	return names
}

const (
	nameSuffix     = "-results"
	maxNameLen     = 253 // a DNS subdomain, as ConfigMap names are
	maxLabelLen    = 63
	maxShardDigits = 6
	maxShards      = 999999 // maxShardDigits
	hashLen        = 8
)

// Labels returns the labels of a session's results ConfigMaps, which also
// select them: the operator's ManagedByLabel and SessionLabel.
func Labels(session string) map[string]string {
	return map[string]string{
		snoopv1alpha1.ManagedByLabel: snoopv1alpha1.ManagedByValue,
		SessionLabel:                 sessionLabelValue(session),
	}
}

func sessionLabelValue(session string) string { return shorten(session, maxLabelLen) }

// shorten returns name when it fits max, else a prefix of it, cut back to
// end in a letter or digit, with "-" and a short hash of the whole name.
// name is a DNS subdomain (as a SnoopSession's name is); so is the result,
// and it is a valid label value too when max is at most 63.
func shorten(name string, max int) string {
	if len(name) <= max {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	prefix := strings.TrimRight(name[:max-hashLen-1], "-.")
	return prefix + "-" + hex.EncodeToString(sum[:])[:hashLen]
}

// base64Capacity is how many bytes fit in n bytes of base64.
func base64Capacity(n int) int { return max(n, 0) / 4 * 3 }

// escapedLen is the length of s as a JSON string, quotes left out.
func escapedLen(s string) int {
	b, _ := json.Marshal(s)
	return len(b) - 2
}

// markdown is report.md: the coverage report with the eligible operations
// still untested.
func markdown(st *State, c *catalog.Catalog) string {
	if c == nil {
		return fmt.Sprintf("# API coverage\n\n%d requests, %d failed, %d unknown. The release's catalog was not available when these results were written, so they are not measured against it yet.\n",
			st.Delta.Requests, st.Delta.FailedRequests, st.Delta.UnknownRequests)
	}
	var b bytes.Buffer
	// Writing to a buffer does not fail.
	_ = report.Write(&b, "markdown", coverage.NewReport(c, &st.Delta), report.Options{Untested: true})
	return b.String()
}

// cutReport cuts md after whole lines so that its JSON-escaped form fits
// budget, and says so at the end.
func cutReport(md string, session *snoopv1alpha1.SnoopSession, budget int) string {
	if escapedLen(md) <= budget {
		return md
	}
	lines := strings.SplitAfter(md, "\n")
	note := func(kept int) string {
		return fmt.Sprintf("\n---\n\n*Cut to fit this ConfigMap: %d of %d lines shown. `kubectl snoop report %s -n %s` prints the whole report.*\n",
			kept, len(lines), session.Name, session.Namespace)
	}
	room := budget - escapedLen(note(len(lines)))
	kept, size := 0, 0
	for _, line := range lines {
		n := escapedLen(line)
		if size+n > room {
			break
		}
		size += n
		kept++
	}
	return strings.Join(lines[:kept], "") + note(kept)
}
