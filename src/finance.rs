//! Savings arithmetic used by the landing page calculator. Pure functions, shared by the server (which
//! renders the first answer, also for visitors without JavaScript) and the browser (which updates it live).

/// Limits that keep the projection meaningful and the numbers readable.
pub const MAX_MONTHLY: f64 = 1_000_000.0;
pub const MAX_YEARS: u32 = 80;
pub const MAX_RATE_PERCENT: f64 = 25.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Projection {
    pub total: f64,
    pub contributed: f64,
    pub growth: f64,
}

/// Parses a monthly amount typed by a person ("250", "1,200.50", " 75 ").
pub fn parse_monthly(input: &str) -> Result<f64, &'static str> {
    let value = parse_number(input).ok_or("Enter an amount, for example 250.")?;
    if !(0.0..=MAX_MONTHLY).contains(&value) {
        return Err("Enter an amount between 0 and 1,000,000.");
    }
    Ok(value)
}

pub fn parse_years(input: &str) -> Result<u32, &'static str> {
    let value = parse_number(input).ok_or("Enter a number of years, for example 20.")?;
    if value.fract() != 0.0 || !(1.0..=f64::from(MAX_YEARS)).contains(&value) {
        return Err("Enter whole years between 1 and 80.");
    }
    Ok(value as u32)
}

pub fn parse_rate(input: &str) -> Result<f64, &'static str> {
    let value =
        parse_number(input.trim_end_matches('%')).ok_or("Enter a yearly return, for example 5.")?;
    if !(0.0..=MAX_RATE_PERCENT).contains(&value) {
        return Err("Enter a yearly return between 0 and 25 percent.");
    }
    Ok(value)
}

fn parse_number(input: &str) -> Option<f64> {
    let cleaned: String = input.trim().chars().filter(|c| *c != ',').collect();
    cleaned.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Future value of saving `monthly` at the end of every month for `years`, compounding monthly at
/// `annual_rate_percent`.
pub fn project_savings(monthly: f64, years: u32, annual_rate_percent: f64) -> Projection {
    let months = f64::from(years * 12);
    let contributed = monthly * months;
    let rate = annual_rate_percent / 100.0 / 12.0;
    let total = if rate == 0.0 {
        contributed
    } else {
        monthly * (((1.0 + rate).powf(months) - 1.0) / rate)
    };
    Projection {
        total,
        contributed,
        growth: total - contributed,
    }
}

/// Formats whole dollars with thousands separators: 12345.6 → "$12,346".
pub fn format_currency(amount: f64) -> String {
    let rounded = amount.round().max(0.0) as u64;
    let digits = rounded.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    out.push('$');
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_rate_is_plain_sum() {
        let p = project_savings(100.0, 10, 0.0);
        assert_eq!(p.total, 12_000.0);
        assert_eq!(p.growth, 0.0);
    }

    #[test]
    fn compounding_matches_the_annuity_formula() {
        // 250/month for 20 years at 5 % a year, compounded monthly: 250 × ((1 + 0.05/12)^240 − 1) / (0.05/12).
        let p = project_savings(250.0, 20, 5.0);
        assert!((p.total - 102_758.42).abs() < 0.01, "{}", p.total);
        assert_eq!(p.contributed, 60_000.0);
    }

    #[test]
    fn currency_formatting() {
        assert_eq!(format_currency(0.0), "$0");
        assert_eq!(format_currency(999.4), "$999");
        assert_eq!(format_currency(1_000.0), "$1,000");
        assert_eq!(format_currency(1_234_567.5), "$1,234,568");
    }

    #[test]
    fn parsers_explain_what_is_wrong() {
        assert_eq!(parse_monthly("1,200"), Ok(1200.0));
        assert!(parse_monthly("-5").is_err());
        assert!(parse_monthly("abc").is_err());
        assert!(parse_monthly("NaN").is_err());
        assert_eq!(parse_years("30"), Ok(30));
        assert!(parse_years("2.5").is_err());
        assert!(parse_years("0").is_err());
        assert_eq!(parse_rate("7%"), Ok(7.0));
        assert!(parse_rate("40").is_err());
    }
}
