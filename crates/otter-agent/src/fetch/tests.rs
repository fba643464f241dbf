//! Unit tests for the pure parts of `fetch`: headers, requests, URL policy.

use super::*;

#[test]
fn content_range_parses() {
    assert_eq!(
        parse_content_range("bytes 100-199/200"),
        Some(ContentRange {
            first: 100,
            last: 199,
            total: Some(200)
        })
    );
    assert_eq!(
        parse_content_range("bytes 0-0/*"),
        Some(ContentRange {
            first: 0,
            last: 0,
            total: None
        })
    );
    for bad in [
        "",
        "bytes */200",
        "bytes 5-4/200",
        "bytes 0-200/200",
        "items 0-1/2",
        "bytes 0-1",
        "bytes a-1/2",
        "bytes 0-18446744073709551616/1",
    ] {
        assert_eq!(parse_content_range(bad), None, "{bad:?}");
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.insert(*k, v.parse().expect("test header"));
    }
    map
}

#[test]
fn partial_answers_must_continue_at_the_request() {
    let url = Url::parse("https://example.invalid/fw.bin").expect("test URL");
    let ok = headers(&[
        ("content-range", "bytes 10-99/100"),
        ("content-length", "90"),
    ]);
    check_partial(&url, &ok, 10, 100).expect("matching range");
    let star = headers(&[("content-range", "bytes 10-99/*")]);
    check_partial(&url, &star, 10, 100).expect("unknown total");
    let elsewhere = headers(&[("content-range", "bytes 0-99/100")]);
    assert!(matches!(
        check_partial(&url, &elsewhere, 10, 100),
        Err(FetchError::BadContentRange { requested: 10, .. })
    ));
    let other_len = headers(&[("content-range", "bytes 10-199/200")]);
    assert!(matches!(
        check_partial(&url, &other_len, 10, 100),
        Err(FetchError::LengthMismatch {
            expected: 100,
            got: 200,
            ..
        })
    ));
    let short = headers(&[("content-range", "bytes 10-49/100")]);
    assert!(check_partial(&url, &short, 10, 100).is_err());
    assert!(check_partial(&url, &HeaderMap::new(), 10, 100).is_err());
}

#[test]
fn requests_name_host_and_range() {
    let url = Url::parse("http://[::1]:8080/a/b.bin?x=1").expect("test URL");
    let request = build_request(&url, 42).expect("request");
    assert_eq!(request.uri(), "/a/b.bin?x=1");
    assert_eq!(request.headers()[header::HOST], "[::1]:8080");
    assert_eq!(request.headers()[header::RANGE], "bytes=42-");
    let url = Url::parse("https://example.invalid:443/m.json").expect("test URL");
    let request = build_request(&url, 0).expect("request");
    assert_eq!(request.headers()[header::HOST], "example.invalid");
    assert!(request.headers().get(header::RANGE).is_none());
}

#[test]
fn urls_are_checked_before_connecting() {
    let fetcher = Fetcher::new(FetchConfig::default()).expect("fetcher");
    let check = |u: &str| fetcher.check_url(&Url::parse(u).expect("test URL"));
    assert!(matches!(
        check("http://example.invalid/"),
        Err(FetchError::HttpRefused { .. })
    ));
    assert!(matches!(
        check("https://example.invalid/"),
        Err(FetchError::NoTrust { .. })
    ));
    assert!(matches!(
        check("ftp://example.invalid/"),
        Err(FetchError::UnsupportedUrl { .. })
    ));
    let message = check("http://example.invalid/").unwrap_err().to_string();
    assert!(message.contains("https://"), "{message}");
}

#[test]
fn zero_attempts_is_refused() {
    let config = FetchConfig {
        max_attempts: 0,
        ..FetchConfig::default()
    };
    assert!(matches!(Fetcher::new(config), Err(FetchError::NoAttempts)));
}

#[test]
fn vec_sink_takes_contiguous_writes() {
    let mut sink = Vec::new();
    sink.write(0, b"ab").expect("first");
    assert!(sink.write(5, b"cd").is_err());
    sink.restart().expect("restart");
    assert!(sink.is_empty());
}
