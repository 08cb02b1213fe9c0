//! The checks themselves: check digits and formats of Chinese identifiers and codes, pure
//! functions with known-good and known-bad vectors.

use chrono::NaiveDate;

/// Characters of the unified social credit code, by value (GB 32100-2015).
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// Whether `s` is a unified social credit code with a correct check character.
pub fn uscc(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    if b.len() != 18 {
        return Err(format!(
            "has {} characters, a credit code has 18",
            s.chars().count()
        ));
    }
    let mut sum = 0;
    for (i, c) in b.iter().take(17).enumerate() {
        let Some(v) = USCC_ALPHABET.iter().position(|a| a == c) else {
            return Err(format!(
                "character {} (`{}`) is not allowed (digits and capitals except I, O, S, V, Z)",
                i + 1,
                *c as char
            ));
        };
        sum += v as u32 * USCC_WEIGHTS[i];
    }
    let want = USCC_ALPHABET[((31 - sum % 31) % 31) as usize];
    if b[17] != want {
        return Err(format!(
            "check character is `{}`, should be `{}`",
            b[17] as char, want as char
        ));
    }
    Ok(())
}

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// Whether `s` is an 18-character citizen ID number (GB 11643-1999): a region, a real birth
/// date, a sequence, and a correct check character.
pub fn id_number(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    if b.len() != 18 {
        return Err(format!(
            "has {} characters, an ID number has 18",
            s.chars().count()
        ));
    }
    if !b[..17].iter().all(u8::is_ascii_digit) {
        return Err("the first 17 characters must be digits".into());
    }
    let birth = &s[6..14];
    let date = NaiveDate::parse_from_str(birth, "%Y%m%d")
        .map_err(|_| format!("birth date `{birth}` does not exist"))?;
    if date.year_ce().1 < 1900 || date > chrono::Local::now().date_naive() {
        return Err(format!("birth date `{birth}` is out of range"));
    }
    let sum: u32 = b[..17]
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(c, w)| u32::from(c - b'0') * w)
        .sum();
    let want = ID_CHECK[(sum % 11) as usize];
    if b[17].to_ascii_uppercase() != want {
        return Err(format!(
            "check character is `{}`, should be `{}`",
            b[17] as char, want as char
        ));
    }
    Ok(())
}

use chrono::Datelike;

/// Whether `s` has the form of a GB/T 2260 administrative region code: 6 digits, a province
/// code 11-82, prefecture and county parts that fit the level they claim.
pub fn region_format(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    if b.len() != 6 || !b.iter().all(u8::is_ascii_digit) {
        return Err("a region code has 6 digits".into());
    }
    let province: u32 = s[..2].parse().unwrap_or(0);
    if !(11..=82).contains(&province) {
        return Err(format!("`{}` is not a province code", &s[..2]));
    }
    if &s[2..4] == "00" && &s[4..] != "00" {
        return Err("a county code needs a prefecture code".into());
    }
    Ok(())
}

/// A date or date-time parsed from its usual text forms.
pub fn date(s: &str) -> Result<NaiveDate, String> {
    crate::value::parse_naive_datetime(s)
        .map(|t| t.date())
        .ok_or_else(|| format!("`{s}` is not a date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_codes() {
        assert_eq!(uscc("91350100M000100Y43"), Ok(()));
        let e = uscc("91350100M000100Y44").expect_err("bad check character");
        assert!(e.contains("should be `3`"), "{e}");
        assert!(uscc("91350100M000100Y4").is_err());
        assert!(
            uscc("91350100M000I00Y43").is_err(),
            "I is not in the alphabet"
        );
        assert!(uscc("91350100m000100y43").is_err(), "lower case");
        for good in [
            "91110000600037341L",
            "91440300708461136T",
            "91230100MA1G8H9J0K",
        ] {
            assert_eq!(uscc(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn id_numbers() {
        assert_eq!(id_number("34052419800101001X"), Ok(()));
        assert_eq!(
            id_number("34052419800101001x"),
            Ok(()),
            "a lower-case x is accepted"
        );
        assert_eq!(id_number("11010519491231002X"), Ok(()));
        assert_eq!(
            id_number("110105194912310029").map_err(|e| e.contains("should be `X`")),
            Err(true)
        );
        let e = id_number("340524198002310010").expect_err("31 February");
        assert!(e.contains("does not exist"), "{e}");
        assert!(id_number("3405241980010100").is_err(), "too short");
        assert!(id_number("34052418000101001X").is_err(), "born in 1800");
    }

    #[test]
    fn region_codes() {
        assert_eq!(region_format("230000"), Ok(()));
        assert_eq!(region_format("230102"), Ok(()));
        assert!(region_format("990000").is_err());
        assert!(region_format("2300").is_err());
        assert!(
            region_format("230012").is_err(),
            "county without prefecture"
        );
        assert!(region_format("23010A").is_err());
    }

    #[test]
    fn dates() {
        assert!(date("2026-02-28").is_ok());
        assert!(date("2026-02-30").is_err());
        assert!(date("20260228").is_ok());
        assert!(date("2026-02-28 10:00:00").is_ok());
        assert!(date("yesterday").is_err());
    }
}
