package proxy

import (
	"net"
	"sync"
)

// ConnQueue is a net.Listener whose connections are pushed in rather than
// accepted from a socket: those the relay hands to the reverse proxy, and
// the CONNECT mode's intercepted tunnels. An http.Server serves it.
type ConnQueue struct {
	addr      net.Addr
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

// NewConnQueue returns an open queue whose Addr is addr.
func NewConnQueue(addr net.Addr) *ConnQueue {
	return &ConnQueue{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Push waits for the server to take conn; false once the queue is closed.
func (q *ConnQueue) Push(conn net.Conn) bool {
	select {
	case q.conns <- conn:
		return true
	case <-q.done:
		return false
	}
}

func (q *ConnQueue) Accept() (net.Conn, error) {
	select {
	case conn := <-q.conns:
		return conn, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *ConnQueue) Close() error {
	q.closeOnce.Do(func() { close(q.done) })
	return nil
}

func (q *ConnQueue) Addr() net.Addr { return q.addr }
