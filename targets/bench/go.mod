module ktrace.dev/bench

go 1.19
