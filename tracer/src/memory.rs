//! Giving freed memory back to the system. Planning reads a big binary's
//! whole DWARF (hundreds of MB on a kube-apiserver) and frees it before the
//! probes are placed; glibc keeps the freed heap and, as later allocations
//! reuse scattered free chunks, pages of it become resident again. ktrace
//! returns the free pages after planning, once the probes are placed, and
//! every few seconds of a session, so its resident set stays what it uses.

/// Returns every free heap page to the kernel (`malloc_trim(0)`: glibc
/// releases whole free pages inside the heap too, not only its top). A
/// few milliseconds on a heap of a few hundred MB.
pub fn trim() {
    // SAFETY: malloc_trim only gives free pages back; it has no
    // preconditions and touches no memory in use.
    unsafe { libc::malloc_trim(0) };
}
