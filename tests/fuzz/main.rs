//! Property tests with arbitrary input (the fuzzing of issue #11): the spool's record codec, the
//! register decoder with the alarm state machine, and the configuration loader, each fed
//! arbitrary bytes, words and text and mutations of real inputs. None may panic (the release
//! build aborts on a panic: a damaged spool entry or a bad register would stop the gateway),
//! none may allocate without bound, and what they accept must round-trip.
//!
//! The seed inputs live in `tests/fuzz-corpus/{codec,decode,config}/` (with the example
//! configurations in `config/` and `tests/configs/bad/`); an input that once broke the product
//! is kept there as a regression case. Proptest writes a failing case's seed to
//! `tests/fuzz-corpus/proptest-regressions.txt` and replays it on every later run.
//!
//! Budget: each property has a CI budget (the whole file runs in about 30 s in debug on two
//! busy cores); `PLANTGATE_FUZZ_CASES=N` runs N cases of every property instead.
//! `PLANTGATE_FUZZ_SEED=N` replays a run: the seed is printed with every failure.
#![allow(clippy::unwrap_used)]

mod codec;
mod config;
mod decode;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use proptest::test_runner::{Config, FileFailurePersistence, RngSeed};

/// A property's CI budget of cases, or `PLANTGATE_FUZZ_CASES`.
fn budget(ci_cases: u32) -> Config {
    let cases: u32 = std::env::var("PLANTGATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci_cases);
    let seed = std::env::var("PLANTGATE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand_seed);
    // Shown (cargo test prints a failing test's output) with every failure.
    eprintln!("fuzz seed {seed}: rerun with PLANTGATE_FUZZ_SEED={seed}");
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/fuzz-corpus/proptest-regressions.txt",
        ))),
        ..Config::default()
    }
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The files of `tests/fuzz-corpus/<dir>`, name and bytes, in name order.
fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    files(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz-corpus")
            .join(dir),
    )
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Records the largest single allocation of the current thread, so a property can assert that
/// a length prefix in its input does not become an allocation of that size.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// The one unsafe block of the tests: a global allocator must be `unsafe impl`; it only records
// sizes and hands every call to the system allocator unchanged.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// `f`'s result and the largest single allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}
