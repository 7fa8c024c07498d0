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
//! hash instead of 27); a hash with nothing else waiting still frees its block, and the options below
//! still send it straight back to the system.
//!
//! Two options differ from mimalloc's defaults, both because of the argon2 blocks, freed on whichever
//! blocking thread ran the hash, which may then sleep for minutes:
//! - freed memory goes back to the system at once (`purge_delay` 0): with the default delay it is
//!   only purged when that thread allocates again, so every thread that had hashed kept its 19 MiB;
//! - arenas are committed as they are used, not up front (`arena_eager_commit` 0).

/// mimalloc's option numbers, from `mi_option_e` in the v3 `mimalloc.h` that `libmimalloc-sys` builds
/// (its Rust constants follow the older v2 numbering).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Call once at start-up, before the runtime starts its threads.
pub fn configure_allocator() {
    // SAFETY: sets two integer options of the allocator; mimalloc reads them on its next purge and
    // arena commit, and accepts a change at any time.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
    }
}
