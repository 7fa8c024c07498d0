//! Keeping the server's memory flat.
//!
//! Every password hash allocates argon2's 19 MiB working block and frees it. glibc's malloc raises its
//! mmap threshold to the size of the largest block freed, so after the first hash these blocks come
//! from the heap of whichever thread ran the hash, and stay there: with the blocking pool's many
//! threads, a sign-in burst left the process at 500 MiB (measured by bench/run.sh). A fixed threshold
//! keeps large blocks mapped on their own, returned to the system as soon as they are freed.

/// Call once at start-up, before the runtime starts its threads.
pub fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // 128 KiB: glibc's own default, held fixed (setting it turns off the dynamic raise).
        const THRESHOLD: libc::c_int = 128 * 1024;
        // SAFETY: mallopt only sets allocator parameters; it is called before any other thread exists.
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) };
    }
}
