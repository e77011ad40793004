//! Human durations as the Rollout spec writes them: `90s`, `5m`, `1h30m`, `250ms`.

use jiff::SignedDuration;

/// Parses a duration such as `90s`, `5m`, `1h30m` or `250ms`.
///
/// The text is one or more `<integer><unit>` parts, units `h`, `m`, `s` and `ms`, each unit at
/// most once and from the largest to the smallest. The result is never negative.
///
/// ```
/// use canary_core::api::duration::parse_duration;
/// assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
/// assert!(parse_duration("5 minutes").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    const UNITS: [(&str, i64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
    let invalid = || format!("`{text}` is not a duration (write e.g. 90s, 5m, 1h30m, 250ms)");
    let too_long = || format!("`{text}` is too long a duration");
    if text.is_empty() {
        return Err(invalid());
    }
    let mut rest = text;
    let mut millis: i64 = 0;
    let mut last_unit = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        // Only digits: the one way to fail is a number beyond `i64`.
        let value: i64 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let position = UNITS
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or_else(invalid)?;
        if last_unit.is_some_and(|last| position <= last) {
            return Err(invalid());
        }
        last_unit = Some(position);
        millis = value
            .checked_mul(UNITS[position].1)
            .and_then(|part| millis.checked_add(part))
            .ok_or_else(too_long)?;
    }
    Ok(SignedDuration::from_millis(millis))
}

/// Formats a duration the way [`parse_duration`] reads it, e.g. `1h30m` or `90ms`.
pub fn format_duration(duration: SignedDuration) -> String {
    let mut millis = duration.as_millis().max(0);
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        let count = millis / size;
        if count > 0 {
            out.push_str(&format!("{count}{unit}"));
            millis -= count * size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_spec_forms() {
        let secs = |t: &str| parse_duration(t).map(|d| d.as_millis());
        assert_eq!(secs("90s"), Ok(90_000));
        assert_eq!(secs("5m"), Ok(300_000));
        assert_eq!(secs("1h30m"), Ok(5_400_000));
        assert_eq!(secs("1m30s"), Ok(90_000));
        assert_eq!(secs("250ms"), Ok(250));
        assert_eq!(secs("0s"), Ok(0));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "",
            "5",
            "m",
            "-5m",
            "5 m",
            "1.5h",
            "30m1h",
            "5m5m",
            "3d",
            "1h 30m",
            "9999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn numbers_beyond_the_range_are_refused_never_wrapped() {
        for huge in [
            "9223372036854775808ms",
            "99999999999999999999999h",
            "2562047788016h",
            "2562047788015h9999999999999m",
        ] {
            let error = parse_duration(huge).unwrap_err();
            assert!(error.contains("too long"), "{huge}: {error}");
        }
        // The largest that fits is read exactly, for the caller to bound.
        assert_eq!(
            parse_duration("2562047788015h").map(|d| d.as_millis()),
            Ok(2_562_047_788_015 * 3_600_000)
        );
    }

    proptest! {
        #[test]
        fn any_text_is_read_or_refused_without_a_panic(text in "[0-9hms]{0,40}") {
            if let Ok(duration) = parse_duration(&text) {
                prop_assert!(!duration.is_negative());
            }
        }

        #[test]
        fn format_then_parse_is_identity(millis in 0i64..1_000_000_000) {
            let d = SignedDuration::from_millis(millis);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
