//! Times: certificate validity as the original computed it, and `ASN1_TIME_print`.
//!
//! certlib did `datetime.strptime(cert.get_notBefore(), "%Y%m%d%H%M%SZ").timestamp()`:
//! pyOpenSSL hands a GeneralizedTime over verbatim, and converts a UTCTime through OpenSSL's
//! `ASN1_TIME_to_generalizedtime` (which validates it and applies any `+hhmm` offset).

/// Broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tm {
    pub year: i64,
    /// 1..=12
    pub mon: u32,
    pub day: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
}

impl Tm {
    pub fn epoch(&self) -> i64 {
        days_from_civil(self.year, self.mon, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.min) * 60
            + i64::from(self.sec)
    }

    fn from_epoch(t: i64) -> Tm {
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400) as u32;
        let (year, mon, day) = civil_from_days(days);
        Tm {
            year,
            mon,
            day,
            hour: secs / 3600,
            min: secs / 60 % 60,
            sec: secs % 60,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn month_days(y: i64, m: u32) -> u32 {
    const MDAYS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if m == 2 && is_leap(y) {
        29
    } else {
        MDAYS[(m - 1) as usize]
    }
}

/// OpenSSL 1.1.1 `asn1_time_to_tm` (non-strict): `generalized` selects the 4-digit year form.
pub(crate) fn asn1_time_to_tm(a: &[u8], generalized: bool) -> Option<Tm> {
    const MIN: [u32; 9] = [0, 0, 1, 1, 0, 0, 0, 0, 0];
    const MAX: [u32; 9] = [99, 99, 12, 31, 23, 59, 59, 12, 59];
    let (end, btz, min_l) = if generalized { (7, 6, 13) } else { (6, 5, 11) };
    let l = a.len();
    if l < min_l {
        return None;
    }
    let digit = |o: usize| {
        a.get(o)
            .copied()
            .filter(u8::is_ascii_digit)
            .map(|c| u32::from(c - b'0'))
    };
    let mut tm = Tm {
        year: 0,
        mon: 1,
        day: 1,
        hour: 0,
        min: 0,
        sec: 0,
    };
    let mut o = 0usize;
    let mut i = 0;
    while i < end {
        if i == btz && matches!(a.get(o), Some(b'Z' | b'+' | b'-')) {
            break;
        }
        let mut n = digit(o)?;
        o += 1;
        if o == l {
            return None;
        }
        n = n * 10 + digit(o)?;
        o += 1;
        if o == l {
            return None;
        }
        let i2 = if generalized { i } else { i + 1 };
        if n < MIN[i2] || n > MAX[i2] {
            return None;
        }
        match i2 {
            0 => tm.year = i64::from(n) * 100,
            1 => {
                if generalized {
                    tm.year += i64::from(n);
                } else {
                    tm.year = if n < 50 {
                        2000 + i64::from(n)
                    } else {
                        1900 + i64::from(n)
                    };
                }
            }
            2 => tm.mon = n,
            3 => {
                if n > month_days(tm.year, tm.mon) {
                    return None;
                }
                tm.day = n;
            }
            4 => tm.hour = n,
            5 => tm.min = n,
            _ => tm.sec = n,
        }
        i += 1;
    }
    if generalized && a.get(o) == Some(&b'.') {
        o += 1;
        if o == l {
            return None;
        }
        let start = o;
        while o < l && a[o].is_ascii_digit() {
            o += 1;
        }
        if o == start || o == l {
            return None;
        }
    }
    match a.get(o) {
        Some(b'Z') => o += 1,
        Some(&c @ (b'+' | b'-')) => {
            o += 1;
            if o + 4 != l {
                return None;
            }
            let mut offset: i64 = 0;
            for k in 0..2 {
                let n = digit(o)? * 10 + digit(o + 1)?;
                let i2 = if generalized { end + k } else { end + k + 1 };
                if n < MIN[i2] || n > MAX[i2] {
                    return None;
                }
                offset += i64::from(n) * if k == 0 { 3600 } else { 60 };
                o += 2;
            }
            if offset != 0 {
                let sign = if c == b'-' { 1 } else { -1 };
                tm = Tm::from_epoch(tm.epoch() + sign * offset);
            }
        }
        _ => return None,
    }
    (o == l).then_some(tm)
}

/// Python's `datetime.strptime(s, "%Y%m%d%H%M%SZ")` (regex with backtracking, then the
/// `datetime` range checks); `None` where Python raised.
pub(crate) fn py_strptime(s: &[u8]) -> Option<Tm> {
    if s.len() < 5 || !s[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let year = s[..4]
        .iter()
        .fold(0i64, |a, &c| a * 10 + i64::from(c - b'0'));
    let mut vals = [0u32; 5];
    if !match_fields(&s[4..], 0, &mut vals) {
        return None;
    }
    let [mon, day, hour, min, sec] = vals;
    if year < 1 || day > month_days(year, mon) || sec > 59 {
        return None;
    }
    Some(Tm {
        year,
        mon,
        day,
        hour,
        min,
        sec,
    })
}

/// The candidate (value, length) pairs of field `f` at the start of `s`, in regex order.
fn field_options(s: &[u8], f: usize) -> [Option<(u32, usize)>; 2] {
    let d = |i: usize| {
        s.get(i)
            .copied()
            .filter(u8::is_ascii_digit)
            .map(|c| u32::from(c - b'0'))
    };
    let two = match (s.first(), d(0), d(1)) {
        // %d also accepts " [1-9]".
        (Some(b' '), _, Some(b)) if f == 1 && b >= 1 => Some((b, 2)),
        (_, Some(a), Some(b)) => {
            let v = a * 10 + b;
            let ok = match f {
                0 => (1..=12).contains(&v),
                1 => (1..=31).contains(&v),
                2 => v <= 23,
                3 => v <= 59,
                _ => v <= 61,
            };
            ok.then_some((v, 2))
        }
        _ => None,
    };
    let one = d(0).filter(|&a| f > 1 || a >= 1).map(|a| (a, 1));
    [two, one]
}

fn match_fields(s: &[u8], f: usize, vals: &mut [u32; 5]) -> bool {
    if f == 5 {
        return s == b"Z";
    }
    for (v, n) in field_options(s, f).into_iter().flatten() {
        vals[f] = v;
        if match_fields(&s[n..], f + 1, vals) {
            return true;
        }
    }
    false
}

/// Epoch seconds of a validity time as certlib computed them; `None` where it raised.
pub(crate) fn validity_epoch(tag: u32, content: &[u8]) -> Option<i64> {
    match tag {
        super::der::UTC_TIME => asn1_time_to_tm(content, false).map(|t| t.epoch()),
        super::der::GENERALIZED_TIME => py_strptime(content).map(|t| t.epoch()),
        _ => None,
    }
}

/// A best-effort reading for times the original could not convert.
pub(crate) fn lenient_epoch(tag: u32, content: &[u8]) -> i64 {
    let generalized = tag == super::der::GENERALIZED_TIME;
    asn1_time_to_tm(content, generalized).map_or(0, |t| t.epoch())
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `ASN1_GENERALIZEDTIME_print` / `ASN1_TIME_print` of a GeneralizedTime:
/// `Mar  2 01:03:24.786 2025 GMT`.
pub(crate) fn generalized_time_print(v: &[u8], out: &mut Vec<u8>) {
    let Some(tm) = asn1_time_to_tm(v, true) else {
        out.extend_from_slice(b"Bad time value");
        return;
    };
    let gmt = v.last() == Some(&b'Z');
    let mut frac = "";
    if v.len() > 15 && v[14] == b'.' {
        let mut n = 1;
        while 14 + n < v.len() && v[14 + n].is_ascii_digit() {
            n += 1;
        }
        frac = std::str::from_utf8(&v[14..14 + n]).unwrap_or("");
    }
    push_printed(&tm, frac, gmt, out);
}

/// The same for a time given in epoch milliseconds (SCT timestamps).
pub(crate) fn print_epoch_millis(ms: u64, out: &mut Vec<u8>) {
    let tm = Tm::from_epoch((ms / 1000) as i64);
    push_printed(&tm, &format!(".{:03}", ms % 1000), true, out);
}

/// `Mon dd hh:mm:ss<frac> yyyy[ GMT]`, as OpenSSL prints times.
fn push_printed(tm: &Tm, frac: &str, gmt: bool, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(
        out,
        "{} {:2} {:02}:{:02}:{:02}{} {}{}",
        MONTHS[(tm.mon - 1) as usize],
        tm.day,
        tm.hour,
        tm.min,
        tm.sec,
        frac,
        tm.year,
        if gmt { " GMT" } else { "" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for d in [-800_000i64, -1, 0, 1, 10_957, 20_000, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn utc_times() {
        assert_eq!(validity_epoch(23, b"120601000000Z"), Some(1_338_508_800));
        assert_eq!(validity_epoch(23, b"1206010000Z"), Some(1_338_508_800));
        assert_eq!(
            validity_epoch(23, b"120601010000+0100"),
            Some(1_338_508_800)
        );
        assert_eq!(validity_epoch(23, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(validity_epoch(23, b"500101000000Z"), Some(-631_152_000));
        assert_eq!(validity_epoch(23, b"120631000000Z"), None);
        assert_eq!(validity_epoch(23, b"12060100000Z"), None);
    }

    #[test]
    fn generalized_times() {
        assert_eq!(validity_epoch(24, b"20120601000000Z"), Some(1_338_508_800));
        assert_eq!(validity_epoch(24, b"00000101000000Z"), None);
        assert_eq!(validity_epoch(24, b"20560811122001-0600"), None);
        assert_eq!(validity_epoch(24, b"20120601000000.5Z"), None);
        assert_eq!(validity_epoch(24, b"20120230000000Z"), None);
        // The regex accepts one-digit fields.
        assert_eq!(validity_epoch(24, b"201206010000Z"), Some(1_338_508_800));
    }

    #[test]
    fn printing() {
        let mut v = Vec::new();
        generalized_time_print(b"20061127202342Z", &mut v);
        assert_eq!(v, b"Nov 27 20:23:42 2006 GMT");
        let mut v = Vec::new();
        print_epoch_millis(1_365_181_457_060, &mut v);
        assert_eq!(v, b"Apr  5 17:04:17.060 2013 GMT");
    }
}
