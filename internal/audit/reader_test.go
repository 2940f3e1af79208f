package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// The one-line-at-a-time reader below is the reference the parallel read
// (Read, AnalyzeSources) is tested against: it decodes and counts each line
// in order, with nothing shared between workers.

// Reader yields one event per request from audit log lines, the event it
// counts at (see Deduper): ResponseComplete or Panic, or ResponseStarted
// for a request still open when the log ends. It reads one line at a time;
// Analyze and Classify read in parallel.
type Reader struct {
	lines lineReader
	dec   decoder
	ev    Event
	dedup *Deduper[*Event]
	ready []*Event // counted, not yet returned
	ended bool
	stats Stats
	// OnMalformed, when set, is told about each malformed line.
	OnMalformed func(line int64, err error)
}

// NewReader reads audit lines from r, remembering DefaultWindow audit IDs.
func NewReader(r io.Reader) *Reader {
	rd := &Reader{lines: lineReader{br: bufio.NewReaderSize(r, 256<<10)}}
	rd.dedup = NewDeduper(0, 0, func(ev *Event) { rd.ready = append(rd.ready, ev) })
	return rd
}

// Next returns the next counted event, or io.EOF.
func (r *Reader) Next() (*Event, error) {
	for len(r.ready) == 0 {
		if r.ended {
			return nil, io.EOF
		}
		line, err := r.lines.next()
		if err == io.EOF {
			r.dedup.Flush()
			r.ended = true
			continue
		}
		if err != nil && !errors.Is(err, errMalformed) {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		r.stats.Lines++
		if err != nil {
			r.malformed(err)
			continue
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if err := r.dec.decode(line, &r.ev); err != nil {
			r.malformed(err)
			continue
		}
		r.stats.Events++
		st := stageOf(r.ev.Stage)
		var ev *Event
		if st != stageReceived {
			ev = r.ev.clone()
		}
		r.dedup.add(keyOf(r.ev.AuditID), st, ev)
	}
	ev := r.ready[0]
	r.ready[0] = nil
	r.ready = r.ready[1:]
	return ev, nil
}

func (r *Reader) malformed(err error) {
	r.stats.Malformed++
	if r.OnMalformed != nil {
		r.OnMalformed(r.stats.Lines, err)
	}
}

// Stats returns what was read so far.
func (r *Reader) Stats() Stats {
	s := r.stats
	s.DedupStats = r.dedup.Stats()
	return s
}

// lineReader splits a stream into lines, skipping over lines longer than
// maxLine.
type lineReader struct {
	br   *bufio.Reader
	long []byte // holds a line longer than br's buffer
	err  error
}

// next returns the next line. A line longer than maxLine is returned empty
// with errLineTooLong, and reading goes on.
func (r *lineReader) next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	line, err := r.br.ReadSlice('\n')
	if err == nil || (err == io.EOF && len(line) > 0) {
		if err == io.EOF {
			r.err = io.EOF
		}
		return line, nil
	}
	if err != bufio.ErrBufferFull {
		r.err = err
		return nil, err
	}
	// A line longer than the buffer: gather it, up to maxLine.
	r.long = append(r.long[:0], line...)
	tooLong := false
	for {
		line, err = r.br.ReadSlice('\n')
		if !tooLong {
			if len(r.long)+len(line) > maxLine {
				tooLong = true
				r.long = r.long[:0]
			} else {
				r.long = append(r.long, line...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			r.err = err
		}
		if tooLong {
			return nil, errLineTooLong
		}
		return r.long, nil
	}
}
