// Command bench-audit writes the benchmark's generated audit log: go run
// ./hack/bench-audit FILE EVENTS.
package main

import (
	"fmt"
	"os"
	"strconv"

	"apisnoop.dev/kube-apisnoop/internal/audit/auditgen"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go run ./hack/bench-audit FILE EVENTS")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[2])
	if err != nil || n <= 0 {
		fmt.Fprintln(os.Stderr, "bench-audit: EVENTS must be a positive number")
		os.Exit(2)
	}
	f, err := os.Create(os.Args[1])
	if err == nil {
		err = auditgen.Write(f, n)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-audit:", err)
		os.Exit(1)
	}
}
