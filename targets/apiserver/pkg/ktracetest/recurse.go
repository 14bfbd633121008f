// Package ktracetest holds functions that exist only to exercise tracer
// edge cases against a live target.
package ktracetest

// Recurse calls itself until depth reaches 1, so Recurse(n) is exactly n
// calls for n >= 1 (and one call for n <= 0). Each frame holds a 256-byte
// buffer that is really read, so a new goroutine's small stack has to grow
// (runtime.morestack) several times on the way down: the case where an entry
// probe at the function's first instruction fires twice.
//
// The noinline directive keeps every call a real call in optimized builds.
//
//go:noinline
func Recurse(depth int) int {
	var buf [256]byte
	for i := range buf {
		buf[i] = byte(depth + i)
	}
	sum := int(buf[depth&0xff])
	if depth > 1 {
		sum += Recurse(depth - 1)
	}
	return sum + int(buf[(depth*7)&0xff])
}
