//! Go symbol names, and the one rule for where a name's package path ends.
//! The tracer's spec matching, its argument layouts and the reports all
//! split names here, so they agree on every name, generics included.

/// The symbol without the directories of its package path:
/// `etcd3.(*store).Create` for `k8s.io/apiserver/pkg/storage/etcd3.(*store).Create`.
///
/// The path ends at the last `/`. `(*T)` and line probes hold no `/` after
/// it, but the type arguments of a generic
/// (`(*T[go.shape.struct { a k8s.io/x.y }]).M`) may, so only the part before
/// the first `[` is searched.
pub fn without_package_path(symbol: &str) -> &str {
    let head = symbol.find('[').map_or(symbol, |i| &symbol[..i]);
    let start = head.rfind('/').map_or(0, |i| i + 1);
    &symbol[start..]
}

/// The symbol without its package: `(*store).Create` for
/// `k8s.io/apiserver/pkg/storage/etcd3.(*store).Create`, `main` for
/// `main.main`. A name with no package (no `.` after the path) is returned
/// as is.
pub fn local_name(symbol: &str) -> &str {
    let tail = without_package_path(symbol);
    tail.split_once('.').map_or(tail, |(_, local)| local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_paths() {
        let create = "k8s.io/apiserver/pkg/storage/etcd3.(*store).Create";
        assert_eq!(without_package_path(create), "etcd3.(*store).Create");
        assert_eq!(local_name(create), "(*store).Create");
        assert_eq!(without_package_path("main.f"), "main.f");
        assert_eq!(local_name("main.f"), "f");
        assert_eq!(local_name("runtime"), "runtime");
        let generic = "k8s.io/x.(*T[go.shape.struct { a k8s.io/y.z }]).M";
        assert_eq!(without_package_path(generic), "x.(*T[go.shape.struct { a k8s.io/y.z }]).M");
        assert_eq!(local_name(generic), "(*T[go.shape.struct { a k8s.io/y.z }]).M");
    }
}
