//! The candidate shapes of the built-in detectors: one ASCII pattern each, in priority
//! order. The patterns are the shapes' definition: the literal-prefixed ones are
//! compiled into the detectors' regex, and the triggered ones are read by hand in
//! `triggers`, held to these patterns by a property test.

/// The candidate shapes, in priority order (the first listed wins where two match at the
/// same place). Every match starts with ASCII and ends on a char boundary; only an
/// e-mail domain's labels (`info@müller.de`) and a password's value (`Grüße2024!x`)
/// may hold characters beyond ASCII.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Shape {
    PemBegin,
    PemEnd,
    UrlPassword,
    Jwt,
    Bearer,
    Basic,
    Prefixed,
    AwsKeyId,
    Assigned,
    QuerySecret,
    Password,
    UserPassword,
    ProsePassword,
    Email,
    Iban,
    Ipv6,
    Ipv4,
    Number,
}

/// A password's value, after the separator (`triggers::password_value_end`): quoted by
/// `"` or `'`, `\` escaping, or else after an optional opening quote (`$open`) an
/// unquoted run: `V` printable characters, `N` those that are no closer (quotes,
/// `,;`, backtick) nor trailer (`)]}>.`), `T` the trailers; it ends at its last `N` and
/// the trailers right after it, six characters or more.
macro_rules! password_value {
    ($open:literal) => {
        concat!(
            r#"(?:"(?:[!#-\[\]-~]|\\[\t -~]|\\?(?u:[^\x00-\x7F]))(?:[\t -!#-\[\]-~]|\\[\t -~]|\\?(?u:[^\x00-\x7F])){5,63}""#,
            r#"|'(?:[!-&(-\[\]-~]|\\[\t -~]|\\?(?u:[^\x00-\x7F]))(?:[\t -&(-\[\]-~]|\\[\t -~]|\\?(?u:[^\x00-\x7F])){5,63}'"#,
            "|",
            $open,
            r#"(?:(?:[!-~]|(?u:[^\x00-\x7F\s])){5,}(?:[!#-&(*-+\-/-:<=?-\[\\^_a-|~]|(?u:[^\x00-\x7F\s]))"#,
            r#"|(?:[!-~]|(?u:[^\x00-\x7F\s])){4}(?:[!#-&(*-+\-/-:<=?-\[\\^_a-|~]|(?u:[^\x00-\x7F\s]))[).>\]}]"#,
            r#"|(?:[!-~]|(?u:[^\x00-\x7F\s])){3}(?:[!#-&(*-+\-/-:<=?-\[\\^_a-|~]|(?u:[^\x00-\x7F\s]))[).>\]}]{2}"#,
            r#"|(?:[!-~]|(?u:[^\x00-\x7F\s])){2}(?:[!#-&(*-+\-/-:<=?-\[\\^_a-|~]|(?u:[^\x00-\x7F\s]))[).>\]}]{3}"#,
            r#"|(?:[!-~]|(?u:[^\x00-\x7F\s]))(?:[!#-&(*-+\-/-:<=?-\[\\^_a-|~]|(?u:[^\x00-\x7F\s]))[).>\]}]{4}"#,
            r#"|(?:[!#-&(*-+\-/-:<=?-\[\\^_a-|~]|(?u:[^\x00-\x7F\s]))[).>\]}]{5})[).>\]}]*)"#,
        )
    };
}

/// No counted repetition where a pattern can start inside any word: the lazy DFA would
/// need a state per count and per mix of live patterns, and spend its time building
/// them. Lengths are checked by the validators instead.
pub const SHAPES: [(Shape, &str); 18] = [
    (
        Shape::PemBegin,
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----",
    ),
    (
        Shape::PemEnd,
        r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----",
    ),
    (
        Shape::UrlPassword,
        r"[A-Za-z][A-Za-z0-9+.\-]*://[A-Za-z0-9._~%!$&'()*+,;=\-]*:[A-Za-z0-9._~%!$&'()*+,;=@#^?|{}\-]+@",
    ),
    (
        Shape::Jwt,
        r"eyJ[A-Za-z0-9_\-]{10,}(?:\.[A-Za-z0-9_\-]*){0,2}",
    ),
    (
        Shape::Bearer,
        r"(?:[Bb]earer|BEARER)[ \t]+[A-Za-z0-9._~+/\-]{12,}",
    ),
    (
        Shape::Basic,
        r#"(?i:authorization)["']?[ \t]*[:=][ \t]*["']?(?i:basic)[ \t]+[A-Za-z0-9+/]{8,}"#,
    ),
    (
        Shape::Prefixed,
        r"sk-[A-Za-z0-9_\-]{20,}|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}|sk_[a-f0-9]{32,}|whsec_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[abposre]-[A-Za-z0-9\-]{10,}|AIza[A-Za-z0-9_\-]{30,}|glpat-[A-Za-z0-9_\-]{20,}|hf_[A-Za-z0-9]{30,}|npm_[A-Za-z0-9]{30,}|ya29\.[A-Za-z0-9_\-]{20,}|SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}|dop_v1_[a-f0-9]{40,}|shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}|pypi-[A-Za-z0-9_\-]{50,}|xapp-[A-Za-z0-9\-]{20,}|lsv2_(?:pt|sk)_[A-Za-z0-9_]{32,}|fw_[A-Za-z0-9]{20,}|dapi[a-f0-9]{32,}|sbp_[a-f0-9]{40,}|NRAK-[A-Za-z0-9]{27,}|dp\.(?:pt|st|sa|ct)\.[A-Za-z0-9]{40,}|gl(?:rt|dt|ptt)-[A-Za-z0-9_\-]{20,}",
    ),
    (
        Shape::AwsKeyId,
        r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA)[A-Z0-9]{16}",
    ),
    (
        Shape::Assigned,
        r#"(?i:[A-Za-z0-9_.\-]*(?:key|token|secret|credential|auth)[A-Za-z0-9_.\-]*)["']?[ \t]*[:=][ \t]*["']?[A-Za-z0-9_+/.~\-]{16,}"#,
    ),
    // A URL's query parameter that is a credential: a signature (`sig`, `signature`,
    // `X-Amz-Signature`), which makes a pre-signed URL a key, or a key-like name; its
    // value may be percent-encoded (`sig=aB3%2Bk9...%3D`), which ends an assigned value
    // at its first `%`. Starts at the `?` or `&`: the parameter's name is all of it.
    (
        Shape::QuerySecret,
        concat!(
            r"[?&](?i:sig|signature|[A-Za-z0-9_.\-]*[_.\-]signature|[A-Za-z0-9_.\-]*(?:key|token|secret|credential|auth)[A-Za-z0-9_.\-]*)=",
            r"(?:[A-Za-z0-9_.~+/\-]|%[0-9A-Fa-f]{2}){16,}",
        ),
    ),
    // A name ending in a password word (`pass` only as a name's last part: `DB_PASS`,
    // not `bypass`, nor `pass` alone, a word of prose: `first pass: ...`), then the
    // value: quoted, 6 to 64 units (a printable byte or blank, a character beyond
    // ASCII, or `\` and the one it escapes; not starting with a blank) up to the closing
    // quote, which is taken (`PASSWORD="correct horse battery staple"`,
    // `"quote\"inside99"`); otherwise the printable characters up to a blank, less a
    // quote, `,;` or backtick and what follows it at the end (the closers of a string,
    // a list, Markdown's inline code), six or more (`password=hunter22`,
    // `DB_PASSWORD=it'sMyPass99`).
    (
        Shape::Password,
        concat!(
            r#"(?i:(?:[A-Za-z0-9_.\-]*(?:password|passwd|passphrase|pwd)|[A-Za-z0-9_.\-]*[_.\-]pass)[0-9]*)["']?[ \t]*[:=][ \t]*"#,
            password_value!(r#"["']?"#),
        ),
    ),
    // curl's credentials (`-u user:password`, `--user user:password`,
    // `--user=user:password`): the password is a printable run of six or more after the
    // user's `:`, as an assigned one.
    (
        Shape::UserPassword,
        r#"(?:-u[ \t]+|--user(?:[ \t]+|=))["']?[A-Za-z0-9_.\-]+:[!#-&(-+\--:<-\[\]-_a-~]{6,}"#,
    ),
    // A password told in prose: `my password is hunter22`, `the password for the admin
    // account was: S3cret!` (up to four words between, the value as an assigned one);
    // or, with no verb, a `.netrc` line's (`machine h login u password s3cret`).
    // A quoted value is read as an assigned one's, blanks included.
    // Found from the literal `assword`/`ASSWORD`; `secrets::prose_password` wants the
    // word whole, and a value that is not a word of prose or a `.netrc` entry before.
    (
        Shape::ProsePassword,
        concat!(
            r#"(?:assword|ASSWORD)(?:(?:[ \t]+[A-Za-z]+){0,4}[ \t]+(?:is|was|IS|WAS):?)?[ \t]+"#,
            password_value!(r#"["'`]?"#),
        ),
    ),
    (
        Shape::Email,
        r"[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9\-]|(?u:[^\x00-\x7F]))+(?:\.(?:[A-Za-z0-9\-]|(?u:[^\x00-\x7F]))+)*\.[A-Za-z]{2,}",
    ),
    // Written in capitals, or all in small letters (`gb82 west ...` typed by hand).
    (
        Shape::Iban,
        r"(?-u:\b)(?:[A-Z]{2}[0-9]{2}[ \-]?[A-Z0-9]{4}|[a-z]{2}[0-9]{2}[ \-]?[a-z0-9]{4})",
    ),
    // Three colons at least: an address with two (`a::b`) is too short to be taken, and
    // times (`12:30:05`) have two.
    (
        Shape::Ipv6,
        r"[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:]*",
    ),
    (
        Shape::Ipv4,
        r"(?-u:\b)[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
    ),
    (
        Shape::Number,
        r"(?:\+\(?|\(\+?|(?-u:\b))[0-9][0-9 ().\-/]{4,}[0-9]",
    ),
];

/// Whether a shape's every match starts with a literal (`sk-`, `eyJ`, `AKIA`, ...): the
/// shapes listed in [`PREFIXES`], found by their literals and their pattern run anchored
/// there. The others are found from a trigger byte and read by hand (`triggers`).
pub fn is_literal(shape: Shape) -> bool {
    PREFIXES.iter().any(|(literal, _)| *literal == shape)
}

/// The pattern of `shape` (the hand readers are held to it by tests).
#[cfg(test)]
pub fn pattern(shape: Shape) -> &'static str {
    SHAPES[shape as usize].1
}

/// Per literal-prefixed shape, literals one of which starts each of its matches (a
/// test in `detect` holds them to the patterns in [`SHAPES`]).
pub const PREFIXES: [(Shape, &[&str]); 7] = [
    (Shape::PemBegin, &["-----BEGIN"]),
    (Shape::PemEnd, &["-----END"]),
    (Shape::Jwt, &["eyJ"]),
    (Shape::Bearer, &["Bearer", "bearer", "BEARER"]),
    (Shape::Prefixed, PROVIDER_KEY_PREFIXES),
    (
        Shape::AwsKeyId,
        &[
            "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "APKA", "AROA",
        ],
    ),
    (Shape::ProsePassword, &["assword", "ASSWORD"]),
];

/// The literals provider keys start with (`Shape::Prefixed`). Whole prefixes, not their
/// shared heads: `gh` or `sk` alone would stop the literal search in every "though" and
/// "ask". Three letters at least, and as few as will do: each literal more makes the
/// SIMD search's buckets coarser (60 of them cost the corpus 2.7 times the search of
/// 49), so prefixes that share three letters share one (`xox`, `shp`, `sk_`), and keys
/// of 32 random characters or more with both cases and digits (Groq's `gsk_`, xAI's
/// `xai-`, Perplexity's `pplx-`, Replicate's `r8_`, Pinecone, Tavily, Linear, Notion,
/// Sentry, Postman, Grafana) are left to the random-token test, which takes them whole.
/// The literals here are for keys that test does not take: hex or one case
/// (`sk_` and hex, `lsv2_`, `dapi`, `sbp_`, `NRAK-`), shorter (`fw_`, GitLab's), or
/// dotted (`dp.pt.`).
pub const PROVIDER_KEY_PREFIXES: &[&str] = &[
    "sk-",
    // Stripe's `sk_live_`/`sk_test_` and ElevenLabs' `sk_` and hex.
    "sk_",
    "rk_live_",
    "rk_test_",
    "whsec_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    // Slack's `xoxa-` ... `xoxe-`.
    "xox",
    "AIza",
    "glpat-",
    "hf_",
    "npm_",
    "ya29.",
    "SG.",
    "dop_v1_",
    // Shopify's `shpat_`, `shpca_`, `shppa_`, `shpss_`.
    "shp",
    "pypi-",
    "xapp-",
    // LangSmith's `lsv2_pt_` and `lsv2_sk_`.
    "lsv2_",
    "fw_",
    "dapi",
    "sbp_",
    "NRAK-",
    // Doppler's `dp.pt.`, `dp.st.`, `dp.sa.`, `dp.ct.`.
    "dp.",
    "glrt-",
    "gldt-",
    "glptt-",
];
