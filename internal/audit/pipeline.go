package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"
)

// Source is one audit log to read.
type Source struct {
	// Name names the log in progress and warnings.
	Name string
	// Open opens it; the reader is closed when read.
	Open func() (io.ReadCloser, error)
	// Size is how many bytes Open's reader yields, when known (0: unknown).
	Size int64
}

// Options tune a parallel read. The zero value is ready.
type Options struct {
	// Workers decode in parallel (0: GOMAXPROCS).
	Workers int
	// Window and MaxOpen bound the Deduper (0: DefaultWindow and
	// DefaultMaxOpen).
	Window, MaxOpen int
	// Progress, when set, is called every ProgressEvery or so, and once at
	// the end, from the goroutine that called the read.
	Progress func(Progress)
	// OnMalformed, when set, is told about each malformed line, in order.
	OnMalformed func(source string, line int64, err error)
	// Select, when set, keeps only the requests it is true for, by their
	// user, their object's namespace and their user agent (AnalyzeSources;
	// every event still goes through the Deduper).
	Select func(user, namespace, userAgent string) bool
}

// ProgressEvery is how often Options.Progress is called.
const ProgressEvery = 200 * time.Millisecond

// Progress is how far a read got.
type Progress struct {
	// Source is the log being read, Bytes how much of it was read and
	// Size its size (0: unknown).
	Source      string
	Bytes, Size int64
	// Stats are the counts of all logs so far.
	Stats Stats
	// Elapsed is the time since the read started.
	Elapsed time.Duration
	// Done is set on the last call.
	Done bool
}

// The read is a pipeline. Per source, a feeder cuts the log into chunks of
// whole lines and hands them to the workers, which decode every line and
// turn each event into a payload (a matched hit, a classification) in
// parallel. One sequencer then takes the chunks of each source in order,
// and the sources in the order given, as if they were one log, and feeds
// their events to one Deduper: what counts, and in what order, depends on
// the input only, never on the scheduling. Several sources are read at
// once (a gzip stream decompresses on one core): the next ones read ahead
// while the sequencer is still on an earlier one.
//
// aheadPerSource bounds the chunks of one source read but not yet
// sequenced; decoded chunks hold only their events' audit IDs and payloads.
const aheadPerSource = 64

// chunkSize is the size of the chunks workers decode (a variable for
// tests).
var chunkSize = 1 << 19

// rec is one event of a chunk, as the sequencer needs it.
type rec[T any] struct {
	key   idKey
	stage stage
	v     T
}

type badLine struct {
	line int // index in the chunk
	err  error
}

// job is one chunk of a source.
type job[T any] struct {
	buf     *[]byte // pooled, returned once decoded
	data    []byte
	tooLong bool  // the chunk is one line longer than maxLine, not kept
	offset  int64 // bytes of the source read up to the chunk's end
	err     error // reading failed here; the last job of its source
	done    chan struct{}

	// Filled by the worker.
	recs  []rec[T]
	bad   []badLine
	lines int64
}

// Read reads audit logs in parallel, as one log in the order given, and
// calls count once per request (see Deduper) with the payload of the event
// it counts at, in an order that depends on the input only.
//
// newWorker is called once per worker and returns the function that turns
// that worker's events into payloads. Each such function is called from
// one goroutine at a time, for every event but RequestReceived ones (which
// never count); the event and its strings share the memory of the chunk
// being read and are valid only during the call, so a payload must not
// keep them. count is called from Read's goroutine.
func Read[T any](ctx context.Context, sources []Source, opts Options, newWorker func() func(*Event) T, count func(T)) (Stats, error) {
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Raw chunks in flight: the workers' and as many again being read.
	bufs := newChunkBufs(2*workers + 2)
	recPool := &sync.Pool{New: func() any { return new([]rec[T]) }}
	jobs := make(chan *job[T], 2*workers)
	queues := make([]chan *job[T], len(sources))
	for i := range queues {
		queues[i] = make(chan *job[T], aheadPerSource)
	}

	var workersDone sync.WaitGroup
	for range workers {
		fn := newWorker()
		workersDone.Add(1)
		go func() {
			defer workersDone.Done()
			defer runtime.KeepAlive(bufs) // its memory is being decoded
			var dec decoder
			for j := range jobs {
				decodeChunk(&dec, j, fn, recPool)
				*j.buf = (*j.buf)[:0]
				if cap(*j.buf) > 4*chunkSize { // grown for a long line
					b := make([]byte, 0, chunkSize)
					*j.buf = b
				}
				bufs.free <- j.buf
				j.buf, j.data = nil, nil
				close(j.done)
			}
		}()
	}

	// Sources start reading in order, a few at a time, so that the one
	// the sequencer is on is always reading.
	active := make(chan struct{}, workers+1)
	var feeders sync.WaitGroup
	feeders.Add(1)
	go func() {
		defer feeders.Done()
		for i, src := range sources {
			select {
			case active <- struct{}{}:
			case <-ctx.Done():
				return
			}
			feeders.Add(1)
			go func() {
				defer feeders.Done()
				defer func() { <-active }()
				feed(ctx, src, queues[i], jobs, bufs)
			}()
		}
	}()
	// Once the feeders are done (all read, or cancelled), the workers are.
	go func() {
		feeders.Wait()
		close(jobs)
	}()

	var (
		stats   Stats
		start   = time.Now()
		last    = start
		dedup   = NewDeduper(opts.Window, opts.MaxOpen, count)
		current Progress
	)
	report := func(done bool) {
		if opts.Progress == nil {
			return
		}
		current.Stats = stats
		current.Stats.DedupStats = dedup.Stats()
		current.Elapsed, current.Done = time.Since(start), done
		opts.Progress(current)
	}
	// On an error the feeders and workers are cancelled and left to end
	// on their own: a feeder may be blocked reading standard input.
	fail := func(err error) (Stats, error) {
		stats.DedupStats = dedup.Stats()
		report(true)
		return stats, err
	}
	for i, src := range sources {
		current = Progress{Source: src.Name, Size: src.Size}
		var line int64
		for {
			if err := ctx.Err(); err != nil {
				return fail(err)
			}
			var j *job[T]
			select {
			case next, ok := <-queues[i]:
				if !ok {
					goto nextSource
				}
				j = next
			case <-ctx.Done():
				return fail(ctx.Err())
			}
			select {
			case <-j.done:
			case <-ctx.Done():
				return fail(ctx.Err())
			}
			if j.err != nil {
				return fail(fmt.Errorf("%s: %w", src.Name, j.err))
			}
			if j.tooLong {
				j.lines = 1
				j.bad = append(j.bad, badLine{0, errLineTooLong})
			}
			stats.Lines += j.lines
			stats.Malformed += int64(len(j.bad))
			stats.Events += int64(len(j.recs))
			if opts.OnMalformed != nil {
				for _, b := range j.bad {
					opts.OnMalformed(src.Name, line+int64(b.line)+1, b.err)
				}
			}
			line += j.lines
			dedup.warm(func(yield func(*idKey) bool) {
				for k := range j.recs {
					if !yield(&j.recs[k].key) {
						return
					}
				}
			})
			for k := range j.recs {
				r := &j.recs[k]
				dedup.add(r.key, r.stage, r.v)
			}
			if j.recs != nil {
				clear(j.recs)
				recs := j.recs[:0]
				recPool.Put(&recs)
			}
			current.Bytes = j.offset
			if now := time.Now(); now.Sub(last) >= ProgressEvery {
				last = now
				report(false)
			}
		}
	nextSource:
	}
	dedup.Flush()
	workersDone.Wait()
	stats.DedupStats = dedup.Stats()
	report(true)
	return stats, nil
}

// decodeChunk decodes the lines of one chunk.
func decodeChunk[T any](dec *decoder, j *job[T], fn func(*Event) T, pool *sync.Pool) {
	recs := *pool.Get().(*[]rec[T])
	var ev Event
	data := j.data
	for idx := 0; len(data) > 0; idx++ {
		j.lines++
		// The fast path finds the end of the line as it goes; other lines
		// are cut at their newline first.
		var err error
		if n, ok := dec.line(data, &ev); ok {
			data = data[n:]
			err = ev.check()
		} else {
			var line []byte
			if nl := bytes.IndexByte(data, '\n'); nl >= 0 {
				line, data = data[:nl], data[nl+1:]
			} else {
				line, data = data, nil
			}
			if line = bytes.TrimSpace(line); len(line) == 0 {
				continue
			}
			err = dec.decode(line, &ev)
		}
		if err != nil {
			j.bad = append(j.bad, badLine{idx, err})
			continue
		}
		r := rec[T]{key: keyOf(ev.AuditID), stage: stageOf(ev.Stage)}
		if r.stage != stageReceived {
			r.v = fn(&ev)
		}
		recs = append(recs, r)
	}
	j.recs = recs
}

// feed cuts one source into chunks of whole lines, queues them for the
// sequencer in order, and hands them to the workers.
func feed[T any](ctx context.Context, src Source, queue chan<- *job[T], jobs chan<- *job[T], chunks *chunkBufs) {
	defer close(queue)
	defer runtime.KeepAlive(chunks) // its memory is being read into
	bufs := chunks.free
	// send queues j; a job with no lines to decode is done already.
	send := func(j *job[T]) bool {
		j.done = make(chan struct{})
		if j.buf == nil {
			close(j.done)
		}
		select {
		case queue <- j:
		case <-ctx.Done():
			return false
		}
		if j.buf == nil {
			return true
		}
		select {
		case jobs <- j:
			return true
		case <-ctx.Done():
			return false
		}
	}
	rc, err := src.Open()
	if err != nil {
		send(&job[T]{err: err})
		return
	}
	defer rc.Close()
	c := chunker{r: rc}
	for {
		var buf *[]byte
		select {
		case buf = <-bufs:
		case <-ctx.Done():
			return
		}
		data, tooLong, err := c.next(*buf)
		switch {
		case err != nil:
			bufs <- buf
			send(&job[T]{err: fmt.Errorf("read audit log: %w", err)})
			return
		case tooLong:
			bufs <- buf
			if !send(&job[T]{tooLong: true, offset: c.offset}) {
				return
			}
		case len(data) == 0: // the end
			bufs <- buf
			return
		default:
			*buf = data
			if !send(&job[T]{buf: buf, data: data, offset: c.offset}) {
				bufs <- buf
				return
			}
		}
	}
}

// chunkBufs hands out the buffers chunks are read into. They are one
// mapping where the system offers huge pages (see mapTable), released once
// the chunkBufs is unreachable: every goroutine that reads into or decodes
// a buffer keeps it alive. The buffers are written once per chunk, all of
// them within the first chunks, and first touching small pages costs a
// fault per page.
type chunkBufs struct {
	free chan *[]byte
}

func newChunkBufs(n int) *chunkBufs {
	c := &chunkBufs{free: make(chan *[]byte, n)}
	var mem []byte
	if n*chunkSize >= hugeTable {
		mem = mapTable(n * chunkSize)
	}
	if mem != nil {
		runtime.AddCleanup(c, unmapTable, mem)
	}
	for i := range n {
		var b []byte
		if mem != nil {
			b = mem[i*chunkSize : i*chunkSize : (i+1)*chunkSize]
		} else {
			b = make([]byte, 0, chunkSize)
		}
		c.free <- &b
	}
	return c
}

// chunker cuts a stream into chunks of whole lines.
type chunker struct {
	r      io.Reader
	carry  []byte // the start of a line, read with the previous chunk
	offset int64  // bytes read so far
	eof    bool
}

// next fills b (from length 0, growing it as needed for a long line) with
// whole lines: its data ends with a newline, except at the end of the
// stream. Empty data is the end. tooLong stands for one line longer than
// maxLine, skipped.
func (c *chunker) next(b []byte) (data []byte, tooLong bool, err error) {
	b = append(b[:0], c.carry...)
	c.carry = c.carry[:0]
	for {
		for !c.eof && len(b) < cap(b) {
			n, err := c.r.Read(b[len(b):cap(b)])
			b = b[:len(b)+n]
			c.offset += int64(n)
			if errors.Is(err, io.EOF) {
				c.eof = true
			} else if err != nil {
				return nil, false, err
			}
		}
		if c.eof {
			return b, false, nil
		}
		if end := bytes.LastIndexByte(b, '\n') + 1; end > 0 {
			c.carry = append(c.carry, b[end:]...)
			return b[:end], false, nil
		}
		// A line longer than b: grow b up to maxLine and a newline.
		if len(b) > maxLine {
			return nil, true, c.skipLine(b)
		}
		bigger := make([]byte, len(b), min(2*cap(b), maxLine+1))
		copy(bigger, b)
		b = bigger
	}
}

// skipLine reads past the end of the current line, using b.
func (c *chunker) skipLine(b []byte) error {
	for !c.eof {
		n, err := c.r.Read(b[:cap(b)])
		c.offset += int64(n)
		if errors.Is(err, io.EOF) {
			c.eof = true
		} else if err != nil {
			return err
		}
		if nl := bytes.IndexByte(b[:n], '\n'); nl >= 0 {
			c.carry = append(c.carry, b[nl+1:n]...)
			return nil
		}
	}
	return nil
}
