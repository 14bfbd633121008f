// Stand-in for the real k8s.io/apiserver; see targets/apiserver/README.md.
module k8s.io/apiserver

go 1.19

require k8s.io/apimachinery v0.0.0

replace k8s.io/apimachinery => ../apimachinery
