//! HTTP `Range: bytes=...` for the preview video: browsers ask for pieces of it to learn its
//! duration and to seek.

/// The asked range cannot be served from a file of this size (answer 416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// The byte range (first, last, both inclusive) a `Range` header asks of a file of `size`
/// bytes; `Ok(None)` means the whole file (no header, another unit, or several ranges, which
/// a 200 with the whole file answers correctly).
pub fn parse(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| s.parse::<u64>().map_err(|_| Unsatisfiable);
    let range = if first.is_empty() {
        // `bytes=-N`: the last N bytes.
        let n = number(last)?;
        if n == 0 || size == 0 {
            return Err(Unsatisfiable);
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let first = number(first)?;
        let last = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            number(last)?.min(size.saturating_sub(1))
        };
        if first >= size || last < first {
            return Err(Unsatisfiable);
        }
        (first, last)
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_browsers_send() {
        assert_eq!(parse(None, 100), Ok(None));
        assert_eq!(parse(Some("bytes=0-"), 100), Ok(Some((0, 99))));
        assert_eq!(parse(Some("bytes=10-19"), 100), Ok(Some((10, 19))));
        assert_eq!(parse(Some("bytes=90-200"), 100), Ok(Some((90, 99))));
        assert_eq!(parse(Some("bytes=-30"), 100), Ok(Some((70, 99))));
        assert_eq!(parse(Some("bytes=-300"), 100), Ok(Some((0, 99))));
        assert_eq!(parse(Some(" bytes=5-5"), 100), Ok(Some((5, 5))));
    }

    #[test]
    fn ranges_outside_the_file_are_refused() {
        assert_eq!(parse(Some("bytes=100-"), 100), Err(Unsatisfiable));
        assert_eq!(parse(Some("bytes=20-10"), 100), Err(Unsatisfiable));
        assert_eq!(parse(Some("bytes=-0"), 100), Err(Unsatisfiable));
        assert_eq!(parse(Some("bytes=x-"), 100), Err(Unsatisfiable));
        assert_eq!(parse(Some("bytes=0-"), 0), Err(Unsatisfiable));
    }

    #[test]
    fn what_is_not_one_byte_range_gets_the_whole_file() {
        assert_eq!(parse(Some("items=0-5"), 100), Ok(None));
        assert_eq!(parse(Some("bytes=0-5,10-20"), 100), Ok(None));
    }
}
