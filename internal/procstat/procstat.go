// Package procstat reads what Linux's /proc says of a process: its name,
// parent and CPU time from /proc/PID/stat, and its memory from
// /proc/PID/status. The proxy benchmarks (hack/bench-proxy and test/proxy)
// charge CPU time and memory to the processes they start with it.
package procstat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// tick is the unit of utime and stime: USER_HZ, 100 per second on Linux.
const tick = 10 * time.Millisecond

// Stat is what /proc/PID/stat says of a process.
type Stat struct {
	Comm   string // the executable's name, as the kernel shortens it
	PPID   int
	User   time.Duration // CPU time spent in user mode so far
	System time.Duration // CPU time the kernel spent for it so far
}

// CPU is the user and system CPU time the process has used.
func (s Stat) CPU() time.Duration { return s.User + s.System }

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	return parseStat(data)
}

// parseStat reads "pid (comm) state ppid ... utime stime ...". comm may hold
// spaces and parentheses, so it ends at the last ')'.
func parseStat(data []byte) (Stat, error) {
	open, closing := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || closing < open {
		return Stat{}, fmt.Errorf("stat %q: no (comm)", data)
	}
	// After "(comm)": state is field 0, ppid field 1, utime field 11 and
	// stime field 12.
	fields := strings.Fields(string(data[closing+1:]))
	if len(fields) < 13 {
		return Stat{}, fmt.Errorf("stat %q: %d fields after comm, want 13 or more", data, len(fields))
	}
	var n [3]int
	for i, f := range []int{1, 11, 12} {
		v, err := strconv.Atoi(fields[f])
		if err != nil {
			return Stat{}, fmt.Errorf("stat field %d: %w", f, err)
		}
		n[i] = v
	}
	return Stat{
		Comm:   string(data[open+1 : closing]),
		PPID:   n[0],
		User:   time.Duration(n[1]) * tick,
		System: time.Duration(n[2]) * tick,
	}, nil
}

// Children returns the processes whose parent is ppid and whose comm is one
// of comms, in /proc's order. Processes that end while it looks are left
// out.
func Children(ppid int, comms ...string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := ReadStat(pid)
		if err != nil {
			continue
		}
		if st.PPID == ppid && slices.Contains(comms, st.Comm) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// MemoryMiB returns the figures /proc/PID/status gives in kB (VmRSS, VmHWM,
// RssAnon, RssFile and more) in MiB, by name.
func MemoryMiB(pid int) (map[string]float64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if value, isKB := strings.CutSuffix(strings.TrimSpace(value), " kB"); ok && isKB {
			kb, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", f.Name(), name, err)
			}
			m[name] = kb / 1024
		}
	}
	return m, sc.Err()
}
