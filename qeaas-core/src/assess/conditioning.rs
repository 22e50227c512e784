//! Entropy of a conditioning component's output, SP 800-90B 3.1.5.
//!
//! `Output_Entropy(n_in, n_out, nw, h_in)` of 3.1.5.1.2 bounds the min-entropy of an `n_out`-bit
//! output computed from `n_in` input bits carrying `h_in` bits, through a function whose
//! narrowest internal width is `nw`. A vetted function (3.1.5.1.1: HMAC, CMAC, CBC-MAC,
//! Hash_df, Block_cipher_df with approved primitives) gets exactly that; a non-vetted one
//! (3.1.5.2, e.g. BLAKE2s) gets at most `min(Output_Entropy, 0.999 n_out, h' n_out)`, `h'`
//! being the per-bit estimate of its tested output, so it can never be called full entropy.
//!
//! The powers of two involved (`2^n_in` with `n_in` in the thousands) do not fit a double, so
//! everything is computed on base-2 logarithms; the result agrees with NIST's arbitrary-precision
//! `ea_conditioning` to double precision.

/// `log2(2^a + 2^b)` without overflow.
fn log2_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + libm::log2(1.0 + libm::exp2(lo - hi))
}

/// `Output_Entropy(n_in, n_out, nw, h_in)` of SP 800-90B 3.1.5.1.2, in bits.
pub fn output_entropy(n_in: u32, n_out: u32, nw: u32, h_in: f64) -> f64 {
    assert!(h_in > 0.0 && h_in <= f64::from(n_in), "0 < h_in <= n_in");
    let n = n_out.min(nw);
    let n_in_f = f64::from(n_in);
    let log_p_high = -h_in;
    // P_low = (1 - P_high) / (2^n_in - 1)
    let log_p_low = libm::log2(-libm::expm1(-h_in * core::f64::consts::LN_2))
        - (n_in_f + libm::log2(-libm::expm1(-n_in_f * core::f64::consts::LN_2)));
    let spread = n_in_f - f64::from(n); // log2 of 2^(n_in - n)
    let log_psi = log2_add(spread + log_p_low, log_p_high).min(0.0);
    // U = 2^(n_in - n) + sqrt(2 n 2^(n_in - n) ln 2) = 2^(n_in - n) (1 + sqrt(2 n ln2 / 2^(n_in - n)))
    let log_u = spread
        + libm::log2(
            1.0 + libm::sqrt(2.0 * f64::from(n) * core::f64::consts::LN_2 * libm::exp2(-spread)),
        );
    let log_omega = (log_u + log_p_low).min(0.0);
    -log_psi.max(log_omega)
}

/// Output entropy of a vetted conditioning component (3.1.5.1.2).
pub fn vetted(n_in: u32, n_out: u32, nw: u32, h_in: f64) -> f64 {
    output_entropy(n_in, n_out, nw, h_in)
}

/// Output entropy of a non-vetted conditioning component (3.1.5.2), given `h_prime`, the
/// entropy per bit estimated on its conditioned output.
pub fn non_vetted(n_in: u32, n_out: u32, nw: u32, h_in: f64, h_prime: f64) -> f64 {
    output_entropy(n_in, n_out, nw, h_in)
        .min(0.999 * f64::from(n_out))
        .min(h_prime * f64::from(n_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_input_entropy_gives_nearly_full_output() {
        // 320 full-entropy bits into a 256-bit hash: within 2^-60 or so of 256.
        let h = output_entropy(320, 256, 256, 320.0);
        assert!(h > 255.999_999 && h < 256.0, "{h}");
    }

    #[test]
    fn output_never_exceeds_input_entropy() {
        for h_in in [1.0, 10.0, 100.0, 200.0, 255.0] {
            let h = output_entropy(1024, 256, 256, h_in);
            assert!(h <= h_in + 1e-9, "{h_in}: {h}");
            assert!(h > h_in - 2.0, "{h_in}: {h}");
        }
    }

    #[test]
    fn narrow_internal_width_caps_output() {
        let h = output_entropy(1024, 256, 128, 1000.0);
        assert!(h <= 128.0 && h > 127.9, "{h}");
    }

    #[test]
    fn non_vetted_never_reaches_full_entropy() {
        let h = non_vetted(320, 256, 256, 320.0, 1.0);
        assert!((h - 0.999 * 256.0).abs() < 1e-9, "{h}");
        assert!(non_vetted(320, 256, 256, 320.0, 0.9) <= 0.9 * 256.0);
    }
}
