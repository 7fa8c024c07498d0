//! The memory allocator, and keeping the server's memory flat.
//!
//! The server allocates with mimalloc (see `main.rs`). A page render makes thousands of small
//! allocations, and with glibc's malloc a quarter of the CPU of a signed-in page went to `malloc` and
//! `free` (perf during bench/run.sh). Every password hash also allocates argon2's 19 MiB working block
//! and frees it: glibc (its mmap threshold held fixed, so that the block went back to the system) mapped
//! and faulted in a fresh 19 MiB for every hash, a third of the hash's CPU time.
//!
//! Measured on 2 cores against glibc: signed-in pages 1.2 to 1.7 times as many per second with the
//! options below (1.9 with mimalloc's defaults), a hash 27 ms of CPU instead of 43 ms, and about
//! 15 MiB more resident at rest (45 instead of 30) and 30 MiB more after a burst of sign-ins (70
//! instead of 42).
//!
//! Since then argon2's working memory is handed from hash to hash while they queue
//! (`services::crypto`), so a sign-in flood no longer maps a fresh block per hash (18 ms of CPU per
//! hash instead of 27); a hash with nothing else waiting still frees its block.
//!
//! mimalloc keeps freed memory for a short while before giving it back to the system (its
//! `purge_delay`), and gives it back only when the thread that freed it calls the allocator again. The
//! argon2 blocks are freed on whichever blocking thread ran the hash, which may then sleep for minutes
//! with its 19 MiB: so whoever frees such a block calls [`return_freed_memory`] right after. Every
//! other allocation keeps mimalloc's delay. (Purging everything at once instead, `purge_delay` 0, as
//! before, had page renders fault fresh pages in: measured by hand, 1,511 anonymous pages a second
//! with it, 1,754 without.)
//!
//! One option differs from mimalloc's defaults: arenas are committed as they are used, not up front
//! (`arena_eager_commit` 0), so the resident size is what is in use.

/// mimalloc's option numbers, from `mi_option_e` in the v3 `mimalloc.h` that `libmimalloc-sys` builds
/// (its Rust constants follow the older v2 numbering).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Call once at start-up, before the runtime starts its threads.
pub fn configure_allocator() {
    // SAFETY: sets an integer option of the allocator; mimalloc reads it on its next arena commit, and
    // accepts a change at any time.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
    }
}

/// Gives the memory freed so far back to the system now, instead of after mimalloc's delay: for code
/// that has just freed a large block and may not allocate again for a long time. Costs a walk over
/// this thread's heap, so not for every allocation. (With another global allocator, as in unit tests,
/// mimalloc's own heaps are empty and this does nothing.)
pub fn return_freed_memory() {
    // SAFETY: mi_collect takes no pointers; it may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Runs `work` on Tokio's blocking pool, then gives back what it freed there ([`return_freed_memory`]).
/// For CPU-heavy work that allocates a lot and finishes on a thread that may then sleep for minutes
/// with the garbage: the password policy's first zxcvbn run left 22 MiB resident that way, about 9 of
/// it already freed (measured by hand on the release build).
pub async fn spawn_blocking_and_give_back<T, F>(work: F) -> Result<T, tokio::task::JoinError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let result = work();
        return_freed_memory();
        result
    })
    .await
}
