// Command miceprobe is the mice client and server of the kernel matrix
// (scripts/kernel-matrix): a mouse is a fresh TCP connection, a 1-byte
// request and a 16 KB reply; its completion time runs from connect to the
// last reply byte. Standard library only, built static:
//
//	GO111MODULE=off CGO_ENABLED=0 go build -o OUT tests/miceprobe/main.go
//
// Usage:
//
//	miceprobe serve ADDR:PORT                          (until killed)
//	miceprobe run ADDR:PORT[,ADDR:PORT...] COUNT INTERVAL_MS
//	miceprobe clients ADDR:PORT CLIENTS SECONDS
//
// clients runs CLIENTS closed-loop clients, each fetching mice back to back
// for SECONDS (the many-mice overload of the kernel matrix), and prints
// "mice addr=A n=N errors=E p50_ms=X p99_ms=Y p999_ms=Z max_ms=W ..."; on
// stderr, each client's first mouse as start/connected/first byte/done ms
// since the start (the first wave's timeline).
//
// run sends COUNT mice to each address, one every INTERVAL_MS per address;
// with several addresses their mice alternate on one schedule (A B A B ...),
// so that a stall of the machine hits every address's mice alike. It prints
// one line per address: "mice addr=A n=N errors=E p50_ms=X p99_ms=Y
// max_ms=Z" and exits 1 if any mouse failed.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

const replyBytes = 16 * 1024

func serve(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	reply := make([]byte, replyBytes)
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func(c net.Conn) {
			defer c.Close()
			req := make([]byte, 1)
			if _, err := io.ReadFull(c, req); err == nil {
				c.Write(reply)
			}
		}(c)
	}
}

func mouse(addr string) (time.Duration, error) {
	var at [3]time.Time
	return mouseAt(addr, &at)
}

// mouseAt is mouse, noting when it connected (its SYN-ACK came), when the
// first reply byte came and when the last did.
func mouseAt(addr string, at *[3]time.Time) (time.Duration, error) {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	at[0] = time.Now()
	c.SetDeadline(t0.Add(10 * time.Second))
	if _, err := c.Write([]byte{'?'}); err != nil {
		return 0, err
	}
	buf := make([]byte, replyBytes)
	n, err := c.Read(buf)
	if err != nil {
		return 0, err
	}
	at[1] = time.Now()
	if _, err := io.ReadFull(c, buf[n:]); err != nil {
		return 0, err
	}
	at[2] = time.Now()
	return time.Since(t0), nil
}

// run sends the mice on a fixed schedule (a late mouse does not shift the
// next ones) and waits for all of them.
func run(addrs []string, n int, interval time.Duration) error {
	type res struct {
		target int
		d      time.Duration
		err    error
	}
	total := n * len(addrs)
	step := interval / time.Duration(len(addrs))
	out := make(chan res, total)
	start := time.Now()
	for i := 0; i < total; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * step)))
		t := i % len(addrs)
		go func() { d, err := mouse(addrs[t]); out <- res{t, d, err} }()
	}
	times := make([][]float64, len(addrs))
	errs := make([]int, len(addrs))
	for i := 0; i < total; i++ {
		r := <-out
		if r.err != nil {
			errs[r.target]++
			fmt.Fprintln(os.Stderr, "miceprobe:", r.err)
			continue
		}
		times[r.target] = append(times[r.target], float64(r.d.Microseconds())/1000)
	}
	failed := 0
	for t, addr := range addrs {
		ts := times[t]
		if len(ts) == 0 {
			fmt.Printf("mice addr=%s n=0 errors=%d\n", addr, errs[t])
			failed += errs[t]
			continue
		}
		sort.Float64s(ts)
		fmt.Printf("mice addr=%s n=%d errors=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
			addr, len(ts), errs[t], pctl(ts, 0.50), pctl(ts, 0.99), ts[len(ts)-1])
		failed += errs[t]
	}
	if failed > 0 {
		return fmt.Errorf("%d mice failed", failed)
	}
	return nil
}

// clients: n closed-loop clients for d; a failed mouse counts as an error.
func clients(addr string, n int, d time.Duration) error {
	type res struct {
		first  []float64 // mice started within the first wave
		steady []float64 // every later one
		errs   int
		trace  string  // its first mouse: start/connected/first byte/done ms
		began  float64 // when that mouse started, ms
	}
	out := make(chan res, n)
	start := time.Now()
	end := start.Add(d)
	ms := func(t time.Time) float64 { return float64(t.Sub(start).Microseconds()) / 1000 }
	for i := 0; i < n; i++ {
		go func() {
			var r res
			for time.Now().Before(end) {
				t0 := time.Now()
				var at [3]time.Time
				t, err := mouseAt(addr, &at)
				if r.trace == "" && err == nil {
					r.began = ms(t0)
					r.trace = fmt.Sprintf("%.1f/%.1f/%.1f/%.1f", r.began, ms(at[0]), ms(at[1]), ms(at[2]))
				}
				if err != nil {
					r.errs++
					continue
				}
				ms := float64(t.Microseconds()) / 1000
				if t0.Sub(start) < wave {
					r.first = append(r.first, ms)
				} else {
					r.steady = append(r.steady, ms)
				}
			}
			out <- r
		}()
	}
	var first, steady []float64
	var rs []res
	errs := 0
	for i := 0; i < n; i++ {
		r := <-out
		first = append(first, r.first...)
		steady = append(steady, r.steady...)
		errs += r.errs
		if r.trace != "" {
			rs = append(rs, r)
		}
	}
	// the first wave, mouse by mouse, to stderr: when each client's first
	// mouse started, connected (its SYN-ACK), got its first and last byte
	sort.Slice(rs, func(i, j int) bool { return rs[i].began < rs[j].began })
	traces := make([]string, len(rs))
	for i, r := range rs {
		traces[i] = r.trace
	}
	fmt.Fprintln(os.Stderr, "first wave (start/connected/first byte/done ms):", strings.Join(traces, " "))
	all := append(append([]float64{}, first...), steady...)
	if len(all) == 0 {
		fmt.Printf("mice addr=%s n=0 errors=%d\n", addr, errs)
		return fmt.Errorf("no mouse completed")
	}
	for _, ts := range [][]float64{all, first, steady} {
		sort.Float64s(ts)
	}
	fmt.Printf("mice addr=%s n=%d errors=%d p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f max_ms=%.2f"+
		" first_n=%d first_p99_ms=%.2f first_max_ms=%.2f steady_n=%d steady_p99_ms=%.2f steady_p999_ms=%.2f\n",
		addr, len(all), errs, pctl(all, 0.50), pctl(all, 0.99), pctl(all, 0.999), all[len(all)-1],
		len(first), pctl(first, 0.99), pctl(first, 1), len(steady), pctl(steady, 0.99), pctl(steady, 0.999))
	return nil
}

// wave: the clients' synchronised start, an incast (every client's first
// mouse at once), told apart from the steady state after it.
const wave = 500 * time.Millisecond

// pctl: the p-th quantile of sorted ts (0 when empty).
func pctl(ts []float64, p float64) float64 {
	if len(ts) == 0 {
		return 0
	}
	i := int(float64(len(ts))*p+0.999999) - 1
	if i < 0 {
		i = 0
	}
	return ts[i]
}

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "serve":
		err = serve(os.Args[2])
	case len(os.Args) == 5 && os.Args[1] == "run":
		n, e1 := strconv.Atoi(os.Args[3])
		ms, e2 := strconv.Atoi(os.Args[4])
		if e1 != nil || e2 != nil || n < 1 || ms < 1 {
			err = fmt.Errorf("bad COUNT or INTERVAL_MS")
			break
		}
		err = run(strings.Split(os.Args[2], ","), n, time.Duration(ms)*time.Millisecond)
	case len(os.Args) == 5 && os.Args[1] == "clients":
		n, e1 := strconv.Atoi(os.Args[3])
		secs, e2 := strconv.Atoi(os.Args[4])
		if e1 != nil || e2 != nil || n < 1 || secs < 1 {
			err = fmt.Errorf("bad CLIENTS or SECONDS")
			break
		}
		err = clients(os.Args[2], n, time.Duration(secs)*time.Second)
	default:
		err = fmt.Errorf("usage: miceprobe serve ADDR:PORT | miceprobe run ADDR:PORT[,ADDR:PORT...] COUNT INTERVAL_MS")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "miceprobe:", err)
		os.Exit(1)
	}
}
