package procstat

import (
	"io"
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseStatCommWithParenthesesAndSpaces(t *testing.T) {
	line := "4242 (a) b (c)) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 5 0 1000 0 0\n"
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{Comm: "a) b (c)", PPID: 17, User: 2500 * time.Millisecond, System: 310 * time.Millisecond}
	if st != want {
		t.Errorf("parseStat = %+v, want %+v", st, want)
	}
	if st.CPU() != 2810*time.Millisecond {
		t.Errorf("CPU = %s", st.CPU())
	}
}

func TestParseStatRejectsShortLines(t *testing.T) {
	for _, line := range []string{"", "4242 no comm S 1", "4242 (x) S 1 2 3"} {
		if st, err := parseStat([]byte(line)); err == nil {
			t.Errorf("parseStat(%q) = %+v, want an error", line, st)
		}
	}
}

// TestOwnProcess reads this test's own process and a child of it.
func TestOwnProcess(t *testing.T) {
	if os.Getenv("PROCSTAT_TEST_CHILD") != "" {
		_, _ = io.Copy(io.Discard, os.Stdin) // live until the parent is done looking
		return
	}
	// Spend CPU until at least one tick is charged.
	var st Stat
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		if st, err = ReadStat(os.Getpid()); err != nil {
			t.Fatal(err)
		}
		if st.CPU() > 0 || time.Now().After(deadline) {
			break
		}
	}
	if st.PPID != os.Getppid() || st.CPU() <= 0 {
		t.Errorf("own stat %+v: want parent %d and some CPU time", st, os.Getppid())
	}

	mem, err := MemoryMiB(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if mem["VmRSS"] <= 0 || mem["VmHWM"] < mem["VmRSS"] {
		t.Errorf("memory %v: want VmRSS > 0 and VmHWM >= VmRSS", mem)
	}

	// A child that runs this test binary again and waits on its stdin.
	child := exec.Command(os.Args[0], "-test.run", "^TestOwnProcess$")
	child.Env = append(os.Environ(), "PROCSTAT_TEST_CHILD=1")
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = child.Wait()
	}()
	pids, err := Children(os.Getpid(), st.Comm, "no-such-comm")
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != 1 || pids[0] != child.Process.Pid {
		t.Errorf("Children(self, %q) = %v, want [%d]", st.Comm, pids, child.Process.Pid)
	}
}
