//! Test log-probs shared by beam's unit tests (`src/beam.rs`) and the reference test (`tests/beam_reference.rs`).

/// A small LCG (reproducible test data without a dependency).
pub fn lcg(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        s >> 33
    }
}

/// Log-probs from a small set of values (ties), with some `-inf`, and optionally positive values.
pub fn make_log_probs(rows: usize, v: usize, seed: u64, coarse: bool) -> Vec<f32> {
    let mut r = lcg(seed);
    (0..rows * v)
        .map(|_| {
            let x = r();
            if x % 23 == 0 {
                f32::NEG_INFINITY
            } else if coarse {
                -((x % 7) as f32) * 0.5 + 0.25
            } else {
                -((x % 100_000) as f32) / 7919.0
            }
        })
        .collect()
}
