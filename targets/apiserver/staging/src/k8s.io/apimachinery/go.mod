// Stand-in for the real k8s.io/apimachinery;
// see targets/apiserver/README.md.
module k8s.io/apimachinery

go 1.19
