//! Passwords handed to a command-line tool by its flag, as prompts paste commands:
//! `mysql -uroot -pS3cret`, `sshpass -p 'S3cret!' ssh ...`, `redis-cli -a S3cret`,
//! `docker login -u me -p S3cret`, `--password S3cret`. A tool's flag counts only in a
//! command of that tool, its name before the flag, since other tools give the same
//! letters other meanings (`mkdir -p`, `docker run -p 8080:80`).

use super::kinds::Found;
use super::secrets;
use super::triggers::{is_assigned_password_byte, is_blank};

/// Flags that take a password, and the tools that read them so.
struct PasswordFlag {
    /// The flags, from their `-`.
    flags: &'static [&'static [u8]],
    /// The tools whose name makes the flag a password's (a word of the command before
    /// the flag; `*` at the end: the name's start, `mysql*` for `mysqldump` too). Empty:
    /// any command.
    tools: &'static [&'static [u8]],
    /// The password may be glued to the flag (`-pS3cret`).
    glued: bool,
    /// The password may follow the flag after blanks (`-p S3cret`). mysql's `-p` takes
    /// none so: alone it asks for the password, and the word after is the database.
    spaced: bool,
    /// The tool runs a command given after its own flags, so a flag past the first
    /// word that is no flag is that command's (`sshpass -p S3cret ssh -p 2222 host`).
    wraps: bool,
    /// What the value starts with when it is the password itself, not part of it:
    /// openssl's `pass:` (its `env:`, `file:` and `fd:` say where the password is).
    source: &'static [u8],
}

/// First match wins.
const FLAGS: [PasswordFlag; 7] = [
    PasswordFlag {
        flags: &[b"-p"],
        tools: &[b"mysql*", b"mariadb*"],
        glued: true,
        spaced: false,
        wraps: false,
        source: b"",
    },
    PasswordFlag {
        flags: &[b"-p"],
        tools: &[b"sshpass"],
        glued: true,
        spaced: true,
        wraps: true,
        source: b"",
    },
    // `docker login`, `podman login`, `az login`, `oc login`, `cf login`, and mongosh.
    PasswordFlag {
        flags: &[b"-p"],
        tools: &[b"login", b"mongo*"],
        glued: false,
        spaced: true,
        wraps: false,
        source: b"",
    },
    PasswordFlag {
        flags: &[b"-a"],
        tools: &[b"redis-cli"],
        glued: false,
        spaced: true,
        wraps: false,
        source: b"",
    },
    PasswordFlag {
        flags: &[b"--pass"],
        tools: &[b"redis-cli"],
        glued: false,
        spaced: true,
        wraps: false,
        source: b"",
    },
    // `openssl pkcs12 -passout pass:S3cret`, `openssl enc -pass pass:S3cret`.
    PasswordFlag {
        flags: &[b"-passin", b"-passout", b"-password", b"-pass"],
        tools: &[b"openssl"],
        glued: false,
        spaced: true,
        wraps: false,
        source: b"pass:",
    },
    // `--password=...` is an assignment (`secrets::password`); after a blank it is any
    // tool's, the value then held to look unlike a word of prose.
    PasswordFlag {
        flags: &[b"--password"],
        tools: &[],
        glued: false,
        spaced: true,
        wraps: false,
        source: b"",
    },
];

/// How far back a flag's tool is looked for.
const COMMAND_REACH: usize = 512;

/// The password after the flag whose `-` is at `dash`.
pub fn password(text: &str, dash: usize) -> Option<Found> {
    let bytes = text.as_bytes();
    // A flag is a word of its own; JSON and YAML write commands as quoted words.
    if dash > 0 && !(is_blank(bytes[dash - 1]) || matches!(bytes[dash - 1], b'"' | b'\'')) {
        return None;
    }
    let (entry, flag) = FLAGS.iter().find_map(|entry| {
        let flag = entry.flags.iter().find(|flag| {
            bytes[dash..].starts_with(flag)
                && match bytes.get(dash + flag.len()) {
                    Some(&b) if is_blank(b) => entry.spaced,
                    Some(&b) => entry.glued && is_value_start(b),
                    None => false,
                }
        })?;
        (entry.tools.is_empty() || tool_before(bytes, dash, entry)).then_some((entry, flag))
    })?;
    let after = dash + flag.len();
    let spaced = is_blank(bytes[after]);
    let value_start = after + bytes[after..].iter().take_while(|&&b| is_blank(b)).count();
    let (start, end, quoted) = value_at(bytes, value_start, spaced)?;
    if !bytes[start..end].starts_with(entry.source) {
        return None;
    }
    let start = start + entry.source.len();
    // Spaced, the word after a flag may be prose about it (`-p is insecure`); a word
    // that reads as one is left, as a password told in prose is, unless quoted or
    // after its source's prefix.
    let least = match (spaced && entry.source.is_empty(), entry.tools.is_empty()) {
        (false, _) => 1,
        (true, false) => 4,
        (true, true) => 6,
    };
    let plainly = !spaced || quoted || !entry.source.is_empty();
    let found = secrets::password_value(text, start, end, least)?;
    (plainly || secrets::unlike_a_word(&bytes[found.start..found.end])).then_some(found)
}

/// Whether a value may start with `b`: a password's byte or a quote.
fn is_value_start(b: u8) -> bool {
    is_assigned_password_byte(b) || matches!(b, b'"' | b'\'')
}

/// The value at `at`: quoted (`'S3cr et!'`, its quotes apart, on one line) or a run of a
/// password's bytes; after blanks, not a word starting with `-` (the next flag).
/// `(start, end, quoted)`.
fn value_at(bytes: &[u8], at: usize, spaced: bool) -> Option<(usize, usize, bool)> {
    match *bytes.get(at)? {
        quote @ (b'"' | b'\'') => {
            let len = bytes[at + 1..]
                .iter()
                .take_while(|&&b| b != quote && b != b'\n')
                .count();
            (bytes.get(at + 1 + len) == Some(&quote) && len > 0).then_some((
                at + 1,
                at + 1 + len,
                true,
            ))
        }
        b'-' if spaced => None,
        _ => {
            let len = bytes[at..]
                .iter()
                .take_while(|&&b| is_assigned_password_byte(b))
                .count();
            (len > 0).then_some((at, at + len, false))
        }
    }
}

/// Whether one of `entry`'s tools names the command the flag at `dash` is given to: a
/// word of the same command (back to a line break, `|`, `;`, `&`, a bracket or a
/// backtick) before the flag.
fn tool_before(bytes: &[u8], dash: usize, entry: &PasswordFlag) -> bool {
    let from = dash.saturating_sub(COMMAND_REACH);
    let command_start = bytes[from..dash]
        .iter()
        .rposition(|&b| matches!(b, b'\n' | b'|' | b';' | b'&' | b'(' | b')' | b'`'))
        .map_or(from, |at| from + at + 1);
    let command = &bytes[command_start..dash];
    let Some(tool_end) = entry
        .tools
        .iter()
        .filter_map(|tool| last_word(command, tool))
        .max()
    else {
        return false;
    };
    !entry.wraps || !names_a_command(&command[tool_end..])
}

/// The end of the last place `tool` is a word of `command` (`tool*`: a word starting
/// with it), followed by a blank or a quote.
fn last_word(command: &[u8], tool: &[u8]) -> Option<usize> {
    let (name, prefix) = match tool.strip_suffix(b"*") {
        Some(name) => (name, true),
        None => (tool, false),
    };
    let starts_word = |at: usize| {
        at == 0 || is_blank(command[at - 1]) || matches!(command[at - 1], b'/' | b'"' | b'\'')
    };
    let ends_word = |end: usize| {
        command
            .get(end)
            .is_some_and(|&b| is_blank(b) || matches!(b, b'"' | b'\''))
    };
    memchr::memmem::rfind_iter(command, name).find_map(|at| {
        if !starts_word(at) {
            return None;
        }
        let mut end = at + name.len();
        if prefix {
            end += command[end..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
                .count();
        }
        ends_word(end).then_some(end)
    })
}

/// Whether the words in `args` (a wrapping tool's, up to the flag) name a command: a
/// word that is no flag and no flag's value (the word after a flag with nothing glued).
fn names_a_command(args: &[u8]) -> bool {
    let mut after_bare_flag = false;
    for word in args.split(|&b| is_blank(b)).filter(|word| !word.is_empty()) {
        if word.starts_with(b"-") {
            after_bare_flag = word.len() == 2;
        } else if after_bare_flag {
            after_bare_flag = false;
        } else {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::password;

    fn taken(text: &str) -> Vec<&str> {
        memchr::memchr_iter(b'-', text.as_bytes())
            .filter_map(|dash| password(text, dash))
            .map(|found| &text[found.start..found.end])
            .collect()
    }

    /// Each tool's flag gives its password, glued or after blanks as the tool reads it,
    /// quoted or not.
    #[test]
    fn passwords_after_a_tools_flag_are_found() {
        for (text, password) in [
            ("mysql -u root -pS3cret mydb", "S3cret"),
            ("mysql -uroot -proot", "root"),
            (
                "mysqldump -h db.internal -u app -p'Xk9#m Q2!' shop > shop.sql",
                "Xk9#m Q2!",
            ),
            (
                "docker exec -it db mariadb -uroot -p\"hunter22\"",
                "hunter22",
            ),
            ("/usr/bin/mysql -pS3cret.", "S3cret"),
            ("command: [\"mysql\", \"-uroot\", \"-pS3cret\"]", "S3cret"),
            ("sshpass -p 'S3cret!' ssh deploy@host", "S3cret!"),
            ("sshpass -pS3cret ssh deploy@host", "S3cret"),
            ("sshpass -p Winter2024 scp f host:", "Winter2024"),
            ("redis-cli -h cache -a S3cretPass1 ping", "S3cretPass1"),
            ("redis-cli --pass 'open sesame'", "open sesame"),
            (
                "docker login -u me -p dckr_3xAmple registry.io",
                "dckr_3xAmple",
            ),
            ("az login -u me@corp.com -p 'Winter 2024'", "Winter 2024"),
            (
                "mongosh -u admin -p Adm1nPass --authenticationDatabase admin",
                "Adm1nPass",
            ),
            (
                "argocd login cd.corp --username admin --password Xk9mQ2vL",
                "Xk9mQ2vL",
            ),
            ("ldapsearch --password 'S3cret!' -b dc=corp", "S3cret!"),
            ("run: cd app && mysql -pS3cret", "S3cret"),
            ("mysql -p-x9Q2m!r", "-x9Q2m!r"),
            (
                "openssl pkcs12 -export -in a.crt -out a.p12 -passout pass:hunter",
                "hunter",
            ),
            (
                "openssl enc -aes-256-cbc -pass 'pass:S3 cret' -in f",
                "S3 cret",
            ),
            (
                "openssl rsa -in k.pem -passin pass:S3cret -out plain.pem",
                "S3cret",
            ),
        ] {
            assert_eq!(taken(text), [password], "{text}");
        }
    }

    /// Flags of other tools, other meanings of a tool's flag, references, and prose
    /// about the flags stay.
    #[test]
    fn flags_that_give_no_password_stay() {
        for text in [
            "mkdir -p /var/lib/mysql",
            "docker run -p3306:3306 mysql:8",
            "docker run -d -p 3306:3306 --name db mysql",
            "mysql -u root -p mydb",
            "mysql -u root -p shop2024",
            "mysql -u root -p",
            "mysql -u root -p$MYSQL_PWD",
            "mysql -u root -p\"${DB_PASSWORD}\"",
            "mysql -p<password>",
            "mysql -h db -P3306 -u app",
            "ssh -p 2222 host mysql",
            "sshpass -p \"$PASS\" ssh host",
            "sshpass -f ~/.pw ssh -p 2222 host",
            "sshpass -p S3cret ssh -p 2222 host",
            "cat dump.sql | mysql -u root; grep -pattern file",
            "docker login -p is insecure, use --password-stdin",
            "docker login --password-stdin < token.txt",
            "redis-cli -a",
            "the --password option takes the password",
            "use the -p flag with mysql",
            "e-p and x -p",
            "git log -p --stat",
            "openssl pkcs12 -passin env:P12_PASSWORD -passout file:pw.txt",
            "openssl rsa -passin stdin -in k.pem",
            "openssl req -new -pass pass: -key k.pem",
        ] {
            let kept: Vec<&str> = taken(text)
                .into_iter()
                // The sshpass case's own password is taken; its ssh port is not.
                .filter(|&value| value != "S3cret")
                .collect();
            assert!(kept.is_empty(), "{text}: {kept:?}");
        }
    }
}
