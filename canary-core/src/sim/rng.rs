//! A counter-based random source: the numbers for a given (seed, second, stream) are always the
//! same, however often and in whatever order they are asked for. A simulated metric window can
//! therefore be measured twice (after a crash, say) and give the same value.

/// SplitMix64 over a key built from seed, second and stream.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// The stream `stream` of second `second` under `seed`.
    pub fn new(seed: u64, second: i64, stream: u64) -> Self {
        let mut rng = Rng {
            state: seed
                ^ (second as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03),
        };
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal number (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// How many of `n` trials with probability `p` succeed.
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n == 0 || p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        if n <= 256 {
            return (0..n).filter(|_| self.uniform() < p).count() as u64;
        }
        let mean = n as f64 * p;
        if mean < 30.0 {
            return self.poisson(mean).min(n);
        }
        if n as f64 * (1.0 - p) < 30.0 {
            return n - self.poisson(n as f64 * (1.0 - p)).min(n);
        }
        let draw = mean + self.normal() * (mean * (1.0 - p)).sqrt();
        // `n as f64` may round above `n` (near `u64::MAX`): the draw never exceeds `n`.
        (draw.round().clamp(0.0, n as f64) as u64).min(n)
    }

    /// A Poisson number with a small mean (inversion by multiplication).
    fn poisson(&mut self, mean: f64) -> u64 {
        let limit = (-mean).exp();
        let mut product = self.uniform();
        let mut count = 0;
        while product > limit {
            product *= self.uniform();
            count += 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_gives_the_same_numbers() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(7, 100, 1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::new(7, 100, 1).next_u64(),
            Rng::new(7, 101, 1).next_u64()
        );
        assert_ne!(
            Rng::new(7, 100, 1).next_u64(),
            Rng::new(7, 100, 2).next_u64()
        );
    }

    #[test]
    fn binomial_draws_never_exceed_the_trials() {
        // `n as f64` rounds above `n` here; a draw near `n` must still be at most `n`.
        for n in [u64::MAX, u64::MAX - 1, u64::MAX - 1000, 1 << 60] {
            for p in [
                0.5,
                1.0 - f64::EPSILON / 2.0,
                1e-12,
                f64::MIN_POSITIVE,
                f64::NAN,
            ] {
                for second in 0..50 {
                    let draw = Rng::new(9, second, 1).binomial(n, p);
                    assert!(draw <= n, "n={n} p={p}: {draw}");
                }
            }
        }
    }

    #[test]
    fn binomial_means_are_right() {
        for (n, p) in [(100u64, 0.05), (1000, 0.005), (1000, 0.5), (5000, 0.999)] {
            let draws = 4000;
            let total: u64 = (0..draws).map(|i| Rng::new(3, i, 9).binomial(n, p)).sum();
            let mean = total as f64 / draws as f64;
            let expected = n as f64 * p;
            let tolerance = 4.0 * (n as f64 * p * (1.0 - p) / draws as f64).sqrt() + 0.01;
            assert!(
                (mean - expected).abs() < tolerance,
                "n={n} p={p}: mean {mean}, expected {expected}"
            );
        }
    }
}
