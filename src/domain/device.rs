//! Friendly device labels ("Chrome on macOS") derived from a user agent with `woothee`.

use std::sync::LazyLock;

static PARSER: LazyLock<woothee::parser::Parser> = LazyLock::new(woothee::parser::Parser::new);

const UNKNOWN: &str = "UNKNOWN";

/// A short label for the device behind `user_agent`: "Browser on OS", either part alone when
/// the other is unknown, or "Unknown device".
pub fn label(user_agent: &str) -> String {
    let Some(parsed) = PARSER.parse(user_agent) else {
        return "Unknown device".to_owned();
    };
    let browser = (parsed.name != UNKNOWN && !parsed.name.is_empty()).then_some(parsed.name);
    let os = (parsed.os != UNKNOWN && !parsed.os.is_empty()).then(|| os_name(parsed.os));
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(o)) => o.to_owned(),
        (None, None) => "Unknown device".to_owned(),
    }
}

/// woothee names some systems by device or release; users know them by product name.
fn os_name(os: &str) -> &str {
    match os {
        "Mac OSX" => "macOS",
        "iPhone" | "iPod" => "iOS",
        "iPad" => "iPadOS",
        o if o.starts_with("Windows") => "Windows",
        o => o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_agents() {
        let mac_chrome = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 \
                          (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        assert_eq!(label(mac_chrome), "Chrome on macOS");
        let win_firefox =
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";
        assert_eq!(label(win_firefox), "Firefox on Windows");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
        assert_eq!(label(iphone), "Safari on iOS");
        assert_eq!(label(""), "Unknown device");
        assert_eq!(label("not a browser"), "Unknown device");
    }
}
