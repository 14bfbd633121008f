package ktracetest

import "time"

// Lookup calls itself with key+"/child" until depth reaches 0, and calls
// Leaf before and after each nested call, so Lookup(k, d) is d+1 calls of
// Lookup and 2(d+1) calls of Leaf, all on the caller's goroutine. It is
// the case `ktrace attach --filter key=…` must decide per call: one function
// nested in itself with different values of the filtered argument, and a
// function without it that runs both before and after a nested call
// returns.
//
//go:noinline
func Lookup(key string, depth int) int {
	n := Leaf(depth)
	if depth > 0 {
		n += Lookup(key+"/child", depth-1)
	}
	return n + Leaf(depth) + len(key)
}

// Leaf has no key argument.
//
//go:noinline
func Leaf(n int) int {
	return n*7 + 1
}

// Spin calls Lookup on the caller's goroutine until d has passed, with keys
// alternating between key+"/in" and key+"/out", in batches of 2000 calls
// separated by a 1 ms sleep; it returns the number of calls. A tracer that
// attaches while it runs sees one goroutine enter a traced function
// thousands of times a millisecond.
func Spin(key string, d time.Duration) int {
	keys := [2]string{key + "/in", key + "/out"}
	calls := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		for i := 0; i < 2000; i++ {
			Lookup(keys[i&1], 0)
		}
		calls += 2000
		time.Sleep(time.Millisecond)
	}
	return calls
}
