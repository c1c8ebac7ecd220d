//! Passwords handed to a command-line tool by its flag, as prompts paste commands:
//! `mysql -uroot -pS3cret`, `sshpass -p 'S3cret!' ssh ...`, `redis-cli -a S3cret`,
//! `docker login -u me -p S3cret`, `--password S3cret`. A tool's flag counts only in a
//! command of that tool, its name before the flag, since other tools give the same
//! letters other meanings (`mkdir -p`, `docker run -p 8080:80`). Some tools take the
//! password as a word of the command instead, read from the tool's name or the share
//! it names: htpasswd's batch mode (`htpasswd -b FILE USER S3cret`) and `net use`
//! (`net use X: \\srv\share S3cret /user:me`).

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
const FLAGS: [PasswordFlag; 8] = [
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
    // `openssl enc -aes-256-cbc -k S3cret` (`-kfile pw.txt` names a file).
    PasswordFlag {
        flags: &[b"-k"],
        tools: &[b"openssl"],
        glued: false,
        spaced: true,
        wraps: false,
        source: b"",
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
        b'"' | b'\'' => {
            let close = closing_quote(bytes, at)?;
            (close > at + 1).then_some((at + 1, close, true))
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

/// Where the quote opened at `open` closes, on the same line.
fn closing_quote(bytes: &[u8], open: usize) -> Option<usize> {
    let quote = bytes[open];
    let len = bytes[open + 1..]
        .iter()
        .take_while(|&&b| b != quote && b != b'\n')
        .count();
    let close = open + 1 + len;
    (bytes.get(close) == Some(&quote)).then_some(close)
}

/// Whether a tool's name may start after `b`: a blank, a path's `/` or a quote.
fn opens_a_name(b: u8) -> bool {
    is_blank(b) || matches!(b, b'/' | b'"' | b'\'')
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
    let starts_word = |at: usize| at == 0 || opens_a_name(command[at - 1]);
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

/// Bytes that end a command: a line break, a pipe, `;`, `&`, a redirection, a bracket
/// or a backtick.
fn ends_command(b: u8) -> bool {
    matches!(
        b,
        b'\n' | b'\r' | b'|' | b';' | b'&' | b'<' | b'>' | b'(' | b')' | b'`'
    )
}

/// The next word of a command at or after `at`, unless the command ends before it:
/// `(start, end, quoted)`, a quoted word without its quotes (on one line), and where
/// the word ends. A bare word runs to a blank, as a flag's value does (`(` or `&`
/// inside it are a password's).
fn next_word(bytes: &[u8], at: usize) -> Option<((usize, usize, bool), usize)> {
    let start = at
        + bytes
            .get(at..)?
            .iter()
            .take_while(|&&b| is_blank(b))
            .count();
    match *bytes.get(start)? {
        b if ends_command(b) => None,
        b'"' | b'\'' => {
            let close = closing_quote(bytes, start)?;
            Some(((start + 1, close, true), close + 1))
        }
        _ => {
            let len = bytes[start..]
                .iter()
                .take_while(|&&b| !is_blank(b) && b != b'\n' && b != b'\r')
                .count();
            Some(((start, start + len, false), start + len))
        }
    }
}

/// A positional password (a word, not a flag's value): quoted, taken as it is; bare, a
/// run of a password's bytes of four or more that does not read as a word of prose, as
/// after a flag and a blank (`htpasswd -b FILE USER password` is the manual's own).
fn positional_password(text: &str, (start, end, quoted): (usize, usize, bool)) -> Option<Found> {
    let bytes = text.as_bytes();
    if quoted {
        return (end > start)
            .then(|| secrets::password_value(text, start, end, 1))
            .flatten();
    }
    if !bytes[start..end]
        .iter()
        .all(|&b| is_assigned_password_byte(b))
    {
        return None;
    }
    let found = secrets::password_value(text, start, end, 4)?;
    secrets::unlike_a_word(&bytes[found.start..found.end]).then_some(found)
}

/// How many words of a command are read after the tool's name: commands are short, and
/// prose after a name must not be read to its end.
const COMMAND_WORDS: usize = 16;

/// htpasswd's password in batch mode, given after the file and the user (`htpasswd -b
/// FILE USER PASSWORD`, `-bc`, `-Bbc`) or after the user alone with `-n` (`htpasswd -nb
/// USER PASSWORD`, `-Bbn`): a positional word, so found from the tool's name (at `at`)
/// rather than a flag; without `b` the tool asks for it (`htpasswd -c FILE USER`).
pub fn htpasswd(text: &str, at: usize) -> Option<Found> {
    const NAME: &[u8] = b"htpasswd";
    let bytes = text.as_bytes();
    // The tool, not its file (`/etc/nginx/.htpasswd`).
    if at > 0 && !opens_a_name(bytes[at - 1]) && !ends_command(bytes[at - 1]) {
        return None;
    }
    let mut next = at + NAME.len();
    if !bytes.get(next).is_some_and(|&b| is_blank(b)) {
        return None;
    }
    let (mut batch, mut no_file, mut skip_value) = (false, false, false);
    let mut positional = Vec::with_capacity(3);
    for _ in 0..COMMAND_WORDS {
        let Some((word, after)) = next_word(bytes, next) else {
            break;
        };
        next = after;
        let (start, end, quoted) = word;
        let flag = !quoted && bytes[start] == b'-' && end - start > 1;
        if skip_value {
            skip_value = false;
        } else if flag {
            let letters = &bytes[start + 1..end];
            batch |= letters.contains(&b'b');
            no_file |= letters.contains(&b'n');
            // `-C 10` (bcrypt's cost) and `-r 5000` (SHA's rounds) take a number.
            skip_value = matches!(letters.last(), Some(b'C' | b'r'));
        } else {
            positional.push(word);
            if positional.len() == 3 {
                break;
            }
        }
    }
    let word = *positional.get(if no_file { 1 } else { 2 })?;
    batch.then(|| positional_password(text, word)).flatten()
}

/// The password of Windows' `net use`, found from the `\\` of its share (at `at`): the
/// first word after the share that is no switch (`net use X: \\srv\share S3cret
/// /user:CORP\me`, `net use \\srv\share /user:me S3cret`); `*` asks for it. The share
/// must follow `net use` and a device (`X:`, `*`) or nothing, in the same command.
pub fn net_use(text: &str, at: usize) -> Option<Found> {
    let bytes = text.as_bytes();
    let quoted_share = at > 0 && matches!(bytes[at - 1], b'"' | b'\'');
    let share_start = at - usize::from(quoted_share);
    if share_start > 0 && !is_blank(bytes[share_start - 1]) {
        return None;
    }
    if !after_net_use(&bytes[..share_start]) {
        return None;
    }
    let (_, mut next) = next_word(bytes, share_start)?;
    for _ in 0..COMMAND_WORDS {
        let (word, after) = next_word(bytes, next)?;
        next = after;
        let (start, _, quoted) = word;
        match bytes[start] {
            b'/' if !quoted => continue,
            b'*' if !quoted => return None,
            _ => return positional_password(text, word),
        }
    }
    None
}

/// Whether `before` (the text before a share's path) ends in the words `net use`, in
/// any case (`NET USE`), with a device (`X:`) or `*` after them or not; `net` starts the
/// command (after a blank, a line break or a prompt's `>`).
fn after_net_use(before: &[u8]) -> bool {
    let mut words = before.rsplit(|&b| is_blank(b)).filter(|w| !w.is_empty());
    let mut word = words.next();
    if word
        .is_some_and(|w| w == b"*" || matches!(w, [letter, b':'] if letter.is_ascii_alphabetic()))
    {
        word = words.next();
    }
    word.is_some_and(|w| w.eq_ignore_ascii_case(b"use"))
        && words.next().is_some_and(|w| {
            w.len() >= 3
                && w[w.len() - 3..].eq_ignore_ascii_case(b"net")
                && (w.len() == 3 || ends_command(w[w.len() - 4]))
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
    use super::{htpasswd, net_use, password};

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
            (
                "openssl enc -aes-256-cbc -salt -in f -out f.enc -k S3cret",
                "S3cret",
            ),
            ("openssl enc -d -k 'open sesame' -in f.enc", "open sesame"),
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
            "openssl enc -aes-256-cbc -kfile pw.txt -in f",
            "openssl enc -aes-256-cbc -k $PASSPHRASE -in f",
            "openssl enc -k secret -in f",
            "curl -k https://host/ -d S3cret",
            "helm -k S3cret",
        ] {
            let kept: Vec<&str> = taken(text)
                .into_iter()
                // The sshpass case's own password is taken; its ssh port is not.
                .filter(|&value| value != "S3cret")
                .collect();
            assert!(kept.is_empty(), "{text}: {kept:?}");
        }
    }

    fn positional(text: &str) -> Vec<&str> {
        let bytes = text.as_bytes();
        let tools =
            memchr::memmem::find_iter(bytes, "htpasswd").filter_map(|at| htpasswd(text, at));
        let shares = memchr::memmem::find_iter(bytes, "\\\\").filter_map(|at| net_use(text, at));
        tools
            .chain(shares)
            .map(|found| &text[found.start..found.end])
            .collect()
    }

    /// htpasswd's password in batch mode and `net use`'s are words of the command, found
    /// from the tool's name and from the share.
    #[test]
    fn positional_passwords_are_found() {
        for (text, password) in [
            ("htpasswd -b /etc/nginx/.htpasswd admin S3cret!", "S3cret!"),
            ("htpasswd -bc .htpasswd admin 'open sesame'", "open sesame"),
            (
                "sudo htpasswd -Bbc /etc/apache2/.htpasswd bob Winter2024",
                "Winter2024",
            ),
            ("htpasswd -B -C 12 -b users.txt bob Xk9mQ2vL", "Xk9mQ2vL"),
            ("htpasswd -nb admin Adm1nPass", "Adm1nPass"),
            (
                "docker run --rm httpd:2.4 htpasswd -Bbn testuser tEstPassw0rd > auth/htpasswd",
                "tEstPassw0rd",
            ),
            (
                "RUN /usr/bin/htpasswd -nbB \"me\" \"S3 cret\" >> /etc/users",
                "S3 cret",
            ),
            (
                "net use X: \\\\server\\share S3cret! /user:CORP\\me",
                "S3cret!",
            ),
            ("net use \\\\server\\share S3cret /user:me", "S3cret"),
            (
                "NET USE Z: \\\\10.0.0.5\\c$ /USER:admin Passw0rd",
                "Passw0rd",
            ),
            (
                "net use X: \\\\srv\\share /user:me /persistent:yes 'my pass'",
                "my pass",
            ),
            ("C:\\>net use * \\\\srv\\share Xk9#mQ2 /savecred", "Xk9#mQ2"),
            (
                "net use X: \"\\\\srv\\my share\" /user:me hunter22",
                "hunter22",
            ),
        ] {
            assert_eq!(positional(text), [password], "{text}");
        }
    }

    /// Without batch mode htpasswd asks for the password; `net use` without one, with
    /// `*`, or words that read as prose, and the names in other places, stay.
    #[test]
    fn positional_words_that_are_no_password_stay() {
        for text in [
            "htpasswd -c /etc/nginx/.htpasswd admin",
            "htpasswd -c /etc/nginx/.htpasswd admin S3cret",
            "htpasswd -B users.txt bob",
            "htpasswd -b .htpasswd user password",
            "htpasswd -bc FILE USER PASSWORD",
            "htpasswd -nb admin $ADMIN_PASSWORD",
            "htpasswd -D .htpasswd bob",
            "use htpasswd -b with the file, user and password",
            "cat /etc/nginx/.htpasswd admin S3cret",
            "mv .htpasswd -b x y Z3cret9",
            "net use X: \\\\srv\\share /persistent:yes",
            "net use X: \\\\srv\\share /user:CORP\\me",
            "net use X: \\\\srv\\share * /user:me",
            "net use \\\\srv\\share /user:me and then reboot",
            "Run net use X: \\\\srv\\share to map the drive",
            "copy \\\\srv\\share\\a.txt S3cret9 /y",
            "the internet use \\\\srv\\share S3cret9",
            "net usage \\\\srv\\share S3cret9",
            "printf \"a\\\\b\" S3cret9",
        ] {
            assert_eq!(positional(text), Vec::<&str>::new(), "{text}");
        }
    }
}
