// Package redirect installs the rules of iptables interception: in a pod's
// network namespace, TCP connections to the kubernetes Service go to the
// recording proxy on loopback, except the proxy's own.
//
// The rules are nftables rules written through netlink (github.com/google/
// nftables), not iptables-restore input: the image is static and distroless,
// with no iptables binary, and a pod's network namespace holds no rules of
// kube-proxy or anyone else to coexist with. Everything is in one table of
// its own, so installing is idempotent and removing is deleting the table.
package redirect

import (
	"errors"
	"fmt"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the table that holds the rules.
const TableName = "apisnoop"

// Rules say what to redirect.
type Rules struct {
	// ServiceIP and ServicePort are the kubernetes Service's address, which
	// in-cluster clients dial.
	ServiceIP   net.IP
	ServicePort uint16
	// ProxyPort is the proxy's port on loopback.
	ProxyPort uint16
	// ExcludeUID is the proxy's user: its connections to the API server
	// must not come back to itself.
	ExcludeUID uint32
}

func (r Rules) validate() error {
	switch {
	case r.ServiceIP == nil:
		return errors.New("the service IP is required")
	case r.ServicePort == 0 || r.ProxyPort == 0:
		return errors.New("the service and proxy ports are required")
	}
	return nil
}

// family is the table family for the service IP, and where the destination
// address is in the network header.
func (r Rules) family() (family nftables.TableFamily, daddrOffset uint32, addr []byte) {
	if v4 := r.ServiceIP.To4(); v4 != nil {
		return nftables.TableFamilyIPv4, 16, v4
	}
	return nftables.TableFamilyIPv6, 24, r.ServiceIP.To16()
}

// Install puts the rules in place in the current network namespace,
// replacing any earlier ones.
func Install(r Rules) error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("install redirect: %w", err)
	}
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("install redirect: open netlink: %w", err)
	}
	family, daddrOffset, addr := r.family()
	table := conn.AddTable(&nftables.Table{Name: TableName, Family: family})
	// Flushing a table that may be new is harmless and makes a second
	// install replace the rules instead of adding to them.
	conn.FlushTable(table)
	chain := conn.AddChain(&nftables.Chain{
		Name: "output", Table: table,
		Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest,
	})
	// meta skuid PROXY return
	conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(r.ExcludeUID)},
		&expr.Verdict{Kind: expr.VerdictReturn},
	}})
	// ip daddr SERVICE tcp dport PORT redirect to :PROXY
	conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOffset, Len: uint32(len(addr))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.ServicePort)},
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(r.ProxyPort)},
		&expr.Redir{RegisterProtoMin: 1},
	}})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("install redirect: %w", err)
	}
	return nil
}

// Remove deletes the rules of both families, if there are any.
func Remove() error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("remove redirect: open netlink: %w", err)
	}
	for _, family := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		tables, err := conn.ListTablesOfFamily(family)
		if err != nil {
			return fmt.Errorf("remove redirect: list tables: %w", err)
		}
		for _, t := range tables {
			if t.Name == TableName {
				conn.DelTable(t)
			}
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("remove redirect: %w", err)
	}
	return nil
}
