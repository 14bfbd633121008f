// Command ktrace-bench is the target of `cargo xtask bench`: it calls
// main.work in a tight loop, in rounds of about 200 ms, and prints one line
// per round:
//
//	round <i> <ns_per_call> <calls> <cpu_ns_per_call>
//
// ns_per_call is wall time. cpu_ns_per_call is the loop thread's own CPU
// time (CLOCK_THREAD_CPUTIME_ID), which includes the kernel's work on each
// uprobe hit, since that runs in the trapping thread, but not the time the
// thread waits while other processes run. On a shared machine that makes it
// the steadier measure of what a call costs.
//
// main.work is built to look like the functions ktrace traces in a real
// server: it is not inlined, it calls another function so it has a frame,
// and so it starts with the stack-guard check (`CMPQ 0x10(R14), SP; JBE` to
// runtime.morestack) where ktrace puts its entry probe.
//
// A round is timed in batches whose size adapts so that each batch lasts
// about batchTarget: reading the clock once per batch keeps its cost out of
// the untraced figure, and a traced call (20 µs when a RET is single-stepped)
// cannot make a batch that was sized for untraced calls run for seconds.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

const (
	roundTarget = 200 * time.Millisecond
	batchTarget = 50 * time.Microsecond
	// maxBatch bounds the first batch after a probe is attached: at 20 µs
	// per traced call it lasts at most about 80 ms.
	maxBatch = 4096
)

// sink keeps the results alive so the loop cannot be optimized away.
var sink uint64

//go:noinline
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	return x ^ x>>29
}

// work is the traced function.
//
//go:noinline
func work(x uint64) uint64 {
	return mix(x+1) + x
}

// slow is the traced function of the -slow mode: each call lasts as long
// as its sleep, so calls are in flight whenever ktrace pauses latency.
//
//go:noinline
func slow(d time.Duration) uint64 {
	time.Sleep(d)
	return mix(uint64(d))
}

func main() {
	rounds := flag.Int("rounds", 0, "stop after this many rounds (0: run until killed)")
	slowFor := flag.Duration("slow", 0, "instead, call main.slow, which sleeps this long, back to back on one goroutine")
	onSignal := flag.Bool("start-on-usr1", false, "make no call until SIGUSR1 arrives")
	flag.Parse()
	if *onSignal {
		start := make(chan os.Signal, 1)
		signal.Notify(start, syscall.SIGUSR1)
		<-start
	}
	if *slowFor > 0 {
		for {
			sink += slow(*slowFor)
		}
	}
	// Keep the loop on one thread, so the thread's CPU clock is the loop's.
	runtime.LockOSThread()

	batch := 1
	var x uint64
	for i := 0; *rounds == 0 || i < *rounds; i++ {
		var calls int
		cpuStart := threadCPUTime()
		start := time.Now()
		last := start
		for last.Sub(start) < roundTarget {
			for j := 0; j < batch; j++ {
				x = work(x)
			}
			now := time.Now()
			calls += batch
			batch = nextBatch(batch, now.Sub(last))
			last = now
		}
		elapsed := last.Sub(start)
		cpu := threadCPUTime() - cpuStart
		sink += x
		// os.Stdout is unbuffered: each line is one write, so the reader
		// sees it as soon as the round ends. If the reader has died, the
		// write raises SIGPIPE and the loop exits instead of spinning on.
		fmt.Fprintf(os.Stdout, "round %d %.2f %d %.2f\n",
			i, float64(elapsed.Nanoseconds())/float64(calls), calls, float64(cpu.Nanoseconds())/float64(calls))
	}
}

// threadCPUTime is the calling thread's CPU time. Go 1.19's syscall package
// has no wrapper for clock_gettime, so it is called directly.
func threadCPUTime() time.Duration {
	const clockThreadCPUTimeID = 3
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		panic(fmt.Sprintf("clock_gettime(CLOCK_THREAD_CPUTIME_ID): %v", errno))
	}
	return time.Duration(ts.Nano())
}

// nextBatch scales the batch so that the next one lasts about batchTarget.
func nextBatch(batch int, took time.Duration) int {
	n := 2 * batch
	if took > 0 {
		n = int(int64(batch) * int64(batchTarget) / int64(took))
	}
	// Grow at most 2x per batch so one fast outlier cannot make the next
	// batch huge.
	if n > 2*batch {
		n = 2 * batch
	}
	if n > maxBatch {
		n = maxBatch
	}
	if n < 1 {
		n = 1
	}
	return n
}
