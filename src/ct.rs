//! Comparing secrets (a digest of a client secret, a bearer token) in a time that depends only
//! on their lengths, so that an answer's timing does not tell a client how many of its bytes
//! were right.

/// Whether `a` and `b` are equal, in a time that depends only on their lengths: every byte is
/// compared, eight at a time, the differences gathered without a branch, and only the total
/// tested.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u64;
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in a8.remainder().iter().zip(b8.remainder()) {
        diff |= u64::from(x ^ y);
    }
    for (x, y) in a8.zip(b8) {
        let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or_default());
        diff |= word(x) ^ word(y);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn byte_comparison_sees_every_byte() {
        let a = b"0123456789abcdefXYZ";
        for i in 0..a.len() {
            let mut b = *a;
            b[i] ^= 1;
            assert!(!same_bytes(a, &b), "byte {i}");
        }
        assert!(same_bytes(a, a) && same_bytes(b"", b""));
        assert!(!same_bytes(a, &a[1..]));
    }
}
