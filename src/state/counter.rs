//! The 5-character daily batch counter of `cd_batch` (`yyyyMMdd` + counter). The first
//! 99,999 batches of a day are numbered `00001`..`99999`, as the exchange templates show.
//! An agent with many real-time tables can go past that (ten tables sending every 2 s make
//! 432,000 batches a day), and a sixth digit would overflow the column's width that templates
//! size for 13 characters. So the counter goes on in five characters that still sort after
//! every earlier number, byte for byte: a letter `A`..`Z` then four base-36 digits
//! (`0`-`9`, `A`-`Z`): `A0000` is batch 100,000, `A000Z` 100,035, `ZZZZZ` 43,770,015. Past
//! that (500 batches a second all day) the day has no number left and the batch is refused
//! with the reason, never numbered twice.

const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DECIMAL: i64 = 99_999;
const BLOCK: i64 = 36 * 36 * 36 * 36;

/// The most batches a day can number.
pub const MAX: i64 = DECIMAL + 26 * BLOCK;

/// The counter of the `n`th batch of a day (from 1), or `None` past [`MAX`].
pub fn counter(n: i64) -> Option<String> {
    if (1..=DECIMAL).contains(&n) {
        return Some(format!("{n:05}"));
    }
    if !(DECIMAL + 1..=MAX).contains(&n) {
        return None;
    }
    let m = n - DECIMAL - 1;
    let mut out = vec![b'A' + u8::try_from(m / BLOCK).ok()?];
    let mut rest = m % BLOCK;
    let mut tail = [b'0'; 4];
    for d in tail.iter_mut().rev() {
        *d = DIGITS[usize::try_from(rest % 36).ok()?];
        rest /= 36;
    }
    out.extend_from_slice(&tail);
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_characters_in_order_past_99999_and_none_past_the_last() {
        assert_eq!(counter(1).as_deref(), Some("00001"));
        assert_eq!(counter(99_999).as_deref(), Some("99999"));
        assert_eq!(counter(100_000).as_deref(), Some("A0000"));
        assert_eq!(counter(100_035).as_deref(), Some("A000Z"));
        assert_eq!(counter(100_036).as_deref(), Some("A0010"));
        assert_eq!(counter(DECIMAL + BLOCK + 1).as_deref(), Some("B0000"));
        assert_eq!(counter(MAX).as_deref(), Some("ZZZZZ"));
        assert_eq!(MAX, 43_770_015);
        assert_eq!(counter(MAX + 1), None);
        assert_eq!(counter(0), None);
        // Every number around the turn and a sample beyond: 5 characters, strictly rising.
        let around = (99_000..101_500)
            .chain((101_500..MAX).step_by(9_973))
            .chain([MAX]);
        let mut last = String::new();
        for n in around {
            let c = counter(n).expect("numbered");
            assert_eq!(c.len(), 5, "{n}: {c}");
            assert!(c > last, "{n}: {c} after {last}");
            last = c;
        }
    }
}
